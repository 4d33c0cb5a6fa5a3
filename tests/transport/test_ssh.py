"""The SSH transport on real sshd hosts: ssh_config aliases, jump hosts, host key modes,
keys that want a passphrase, uploaded tools, and where the run secret may (not) appear."""

import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from pytest_meshperf.cluster.inventory import load_cluster
from pytest_meshperf.control.controller import Controller
from pytest_meshperf.measure.runner import run_measurement
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.spec.params import merge_params
from pytest_meshperf.transport import bundle
from pytest_meshperf.transport.ssh import SshOptions

from support.commands import MESHPERF, meshperf
from support.meshcheck import validate_mesh_file
from support.procs import alive, wait_for
from support.testbed_fixtures import netns_testbed

pytestmark = pytest.mark.usefixtures("netns_required")


def write_hosts(path, hosts, defaults=None):
    path.write_text(json.dumps({"defaults": defaults or {}, "hosts": hosts}))
    return path


def restrict_sshd(tb, node, allowed_from):
    """Let ``node``'s sshd accept logins only from ``allowed_from``'s address."""
    config = Path(tb.workdir, node, "sshd_config")
    config.write_text(config.read_text() + f"\nAllowUsers root@{tb.node(allowed_from).address}\n")
    tb.stop_sshd(node)
    tb.start_sshd(node)


def test_ssh_config_aliases_as_addresses(tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        hosts = write_hosts(tmp_path / "hosts.yaml", [{"name": "a", "address": "node1"},
                                                      {"name": "b", "address": "node2"}])
        result = meshperf("check", "--cluster", hosts, "--ssh-config", tb.ssh_config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Result: 2/2 hosts online" in result.stdout
        cluster = load_cluster(str(hosts))
        controller = Controller(cluster, str(tmp_path / "logs"), "alias",
                                ssh_options=SshOptions(ssh_config=tb.ssh_config))
        controller.start()
        try:
            assert controller.failed == {}
            # Tests target the alias's HostName, which only ssh_config knows.
            assert controller.pool.data_address("b") == tb.node("node2").address
            instances = run_measurement(controller.pool, Pair(cluster.nodes[0], cluster.nodes[1]),
                                        merge_params({"duration_s": 1}))[0]
            assert instances[0].metrics["throughput_bps"] > 0
        finally:
            controller.stop()


@pytest.mark.parametrize("how", ["inventory", "ssh_config"])
def test_jump_host(tmp_path, how):
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        restrict_sshd(tb, "node3", allowed_from="node1")
        direct = write_hosts(tmp_path / "direct.yaml", [{"name": "node3", "address": tb.node("node3").address},
                                                        {"name": "node2", "address": tb.node("node2").address}],
                             {"ssh_user": "root", "ssh_key": tb.user_key})
        result = meshperf("check", "--cluster", direct, "--ssh-known-hosts", tb.known_hosts)
        assert result.returncode == 1 and "authentication failed" in result.stdout  # not reachable directly
        node3 = {"name": "node3", "address": tb.node("node3").address}
        args = ["--ssh-known-hosts", tb.known_hosts]
        if how == "inventory":
            node3["ssh_jump"] = f"root@{tb.node('node1').address}"
        else:
            config = tmp_path / "ssh_config"
            # As with OpenSSH, the hop authenticates with what ssh_config gives it.
            config.write_text(f"Host {tb.node('node3').address}\n    ProxyJump root@{tb.node('node1').address}\nHost "
                              f"*\n    IdentityFile {tb.user_key}\n")
            args += ["--ssh-config", config]
        jumped = write_hosts(tmp_path / "jumped.yaml", [node3, {"name": "node2", "address": tb.node("node2").address}],
                             {"ssh_user": "root", "ssh_key": tb.user_key})
        result = meshperf("check", "--cluster", jumped, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Result: 2/2 hosts online" in result.stdout


def test_host_key_modes(tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        known = tmp_path / "known_hosts"
        known.write_text("")
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-known-hosts", known)
        assert result.returncode == 1 and result.stdout.count("unknown host key") == 2
        assert "ssh-keyscan" in result.stdout and "--ssh-host-keys accept-new" in result.stdout
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-known-hosts", known,
                          "--ssh-host-keys", "accept-new")
        assert result.returncode == 0, result.stdout
        # One entry per node, hashed where ssh_config says HashKnownHosts (Debian's default), as ssh writes it.
        import paramiko
        written = paramiko.HostKeys(str(known))
        assert len(known.read_text().splitlines()) == len(tb.nodes)
        assert all(written.lookup(n.address) for n in tb.nodes)
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-known-hosts", known)  # now known
        assert result.returncode == 0 and "host key verified" in result.stdout
        tb.regenerate_host_key("node2")
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-known-hosts", known,
                          "--ssh-host-keys", "accept-new")  # accept-new never accepts a changed key
        assert result.returncode == 1 and "HOST KEY CHANGED" in result.stdout
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-known-hosts", known, "--ssh-host-keys", "off")
        assert result.returncode == 0 and result.stdout.count("HOST KEY NOT CHECKED") == 2


def test_keys_that_want_a_passphrase_or_do_not_fit_are_reported_not_prompted(tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        locked = tmp_path / "locked_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-passphrase", "-f", str(locked)],
                       check=True, timeout=30)
        stranger = tmp_path / "stranger_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
        hosts = write_hosts(tmp_path / "hosts.yaml", [
            {"name": "n1", "address": tb.node("node1").address, "ssh_key": str(locked)},
            {"name": "n2", "address": tb.node("node2").address, "ssh_key": str(stranger)}], {"ssh_user": "root"})
        env = dict(os.environ, HOME=str(tmp_path))  # no ~/.ssh keys or agent to fall back on
        env.pop("SSH_AUTH_SOCK", None)
        result = subprocess.run([MESHPERF, "check", "--cluster", str(hosts), "--ssh-known-hosts", tb.known_hosts],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
        assert result.returncode == 1
        lines = {line.split()[1]: line for line in result.stdout.splitlines()
                 if line.strip()[:1] in ("\u2713", "\u2717")}
        assert "needs a passphrase" in lines["n1"] and "never prompts" in lines["n1"]
        assert "authentication failed" in lines["n2"]


def test_local_iperf3_is_uploaded_once_and_used(pytester, tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        # Testbed nodes share this machine's disk: a directory of this test's own makes the first deploy first.
        common = ["--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts, "--local-iperf3", "/usr/bin/iperf3",
                  "--mesh-remote-dir", str(tmp_path / "remote")]
        first = meshperf("deploy", *common)
        assert first.returncode == 0 and first.stdout.count("bytes sent") >= 2
        second = meshperf("deploy", *common)
        assert second.returncode == 0 and "bytes sent" not in second.stdout
        assert second.stdout.count("up to date") == 4  # agent and iperf3 on both nodes
        pytester.makepyfile("""
            import pytest

            @pytest.mark.meshperf(duration=1)
            def test_tcp(mesh_pair, measure):
                assert "/remote/bin/iperf3-" in measure().instances[0].command
        """)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *common, "--mesh-out", str(tmp_path / "o"))
        result.assert_outcomes(passed=2)


def test_local_netperf_and_netserver_are_uploaded_once_and_used_and_a_missing_netserver_is_named(pytester, tmp_path):
    remote_bin = str(tmp_path / "remote" / "bin")
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        common = ["--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                  "--mesh-remote-dir", str(tmp_path / "remote")]
        upload = ["--local-netperf", "/usr/bin/netperf", "--local-netserver", "/usr/bin/netserver"]
        first = meshperf("deploy", *common, *upload)
        assert first.returncode == 0 and f"netserver {remote_bin}/netserver-" in first.stdout, first.stdout
        second = meshperf("deploy", *common, *upload)
        assert second.returncode == 0 and "bytes sent" not in second.stdout
        assert second.stdout.count("up to date") == 6  # agent, netperf and netserver on both nodes
        check = meshperf("check", *common, "--netserver", "/nonexistent")
        assert check.returncode == 0, check.stdout  # iperf3 still works: not fatal unless --tool netperf
        assert check.stdout.count("netperf missing: netserver /nonexistent not found on the node; install it") == 2
        pytester.makepyfile("""
            import pytest

            @pytest.mark.meshperf(tool="netperf", test="rr", duration=1)
            def test_rr(mesh_pair, measure):
                measure()
        """)
        run = ["-p", "no:cacheprovider", *common]
        result = pytester.runpytest_subprocess(*run, *upload, "--mesh-out", str(tmp_path / "o"))
        result.assert_outcomes(passed=2)
        mesh = validate_mesh_file(str(tmp_path / "o" / "latest" / "mesh.json"))
        for node in mesh["cluster"]["nodes"].values():
            netperf = node["tools"]["netperf"]
            assert netperf["path"].startswith(remote_bin + "/netperf-")
            assert netperf["server_path"].startswith(remote_bin + "/netserver-") and netperf["server_version"]
        for source in mesh["sources"].values():
            for destination in source["destinations"].values():
                ((instance,),) = [entry["instances"] for entry in destination["tests"].values()]
                assert instance["command"].startswith(remote_bin + "/netperf-")
                assert instance["server"]["command"].startswith(remote_bin + "/netserver-")
        # A netserver that is not there: every netperf pair errors, naming it; iperf3 would still run.
        result = pytester.runpytest_subprocess(*run, "--netserver", "/nonexistent", "--mesh-out", str(tmp_path / "x"))
        result.assert_outcomes(errors=2)
        result.stdout.fnmatch_lines(["MeasurementError: node*->node*: cannot start the netperf server on node*: "
                                     "node node*: netserver /nonexistent not found on the node; install it*"] * 2)
        assert "Traceback" not in result.stdout.str()


def test_run_secret_appears_in_no_process_list_log_or_result(tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        cluster = load_cluster(tb.hosts_yaml)
        secret = "5ec2e7" * 11
        controller = Controller(cluster, str(tmp_path / "logs"), "secrettest", secret=secret,
                                ssh_options=SshOptions(known_hosts=tb.known_hosts))
        controller.start()
        try:
            assert controller.failed == {}
            run_measurement(controller.pool, Pair(cluster.nodes[0], cluster.nodes[1]), merge_params({"duration_s": 1}))
            for proc in psutil.process_iter(["cmdline", "environ"]):
                text = " ".join(proc.info["cmdline"] or []) + " ".join((proc.info["environ"] or {}).values())
                assert secret not in text, proc
        finally:
            controller.stop()
        # The agents' logs came home into the run's log folder and left the nodes.
        assert sorted(p.name for p in Path(tmp_path / "logs").iterdir()) == ["agent-node1.log", "agent-node2.log"]
        assert list(Path.home().joinpath(".meshperf", "logs").glob("agent-secrettest-*.log")) == []
        for path in Path(tmp_path / "logs").iterdir():
            text = path.read_text(errors="replace")
            assert "listening on 127.0.0.1" in text and secret not in text, path
        wait_for(lambda: not [p for p in psutil.process_iter(["cmdline"])
                              if "agent-secrettest" in " ".join(p.info["cmdline"] or [])], 30, what="agents gone")


def test_agents_stop_over_rpc_and_a_dead_one_falls_back_to_the_stop_script(tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        cluster = load_cluster(tb.hosts_yaml)
        commands = []
        remote = tmp_path / "remote"
        options = SshOptions(known_hosts=tb.known_hosts, remote_dir=str(remote), echo=commands.append)
        controller = Controller(cluster, str(tmp_path / "logs"), "rpcstop", ssh_options=options)
        controller.start()
        assert controller.failed == {}
        pids = {name: handle.info["pid"] for name, handle in controller.handles.items()}
        agents = {name: psutil.Process(pid) for name, pid in pids.items()}
        run_measurement(controller.pool, Pair(cluster.nodes[0], cluster.nodes[1]), merge_params({"duration_s": 1}))
        agents["node3"].kill()   # its RPC link is dead: only the stop script can fetch its log
        wait_for(lambda: not alive([agents["node3"]]), 10, what="node3's agent killed")
        commands.clear()
        controller.stop()
        # node1 and node2 answered agent.shutdown, exited, and sent their logs; node3 needed the stop script.
        (script,) = commands
        assert script.startswith("node3$ ") and "agent-rpcstop-node3.log" in script
        assert alive(agents.values()) == []   # gone (or a zombie its reaper has not reaped yet) when stop returns
        for name in pids:
            text = (tmp_path / "logs" / f"agent-{name}.log").read_text()
            assert "listening on 127.0.0.1" in text, name
        for name in ("node1", "node2"):
            assert "shutting down: asked by the controller" in (tmp_path / "logs" / f"agent-{name}.log").read_text()
        assert "started client iperf3" in (tmp_path / "logs" / "agent-node1.log").read_text()
        assert list(remote.joinpath("logs").glob("*.log")) == []   # every log left its node


def test_one_command_starts_an_agent_and_a_missing_or_damaged_bundle_is_uploaded_once(tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        cluster = load_cluster(tb.hosts_yaml)
        commands = []
        options = SshOptions(known_hosts=tb.known_hosts, remote_dir=str(tmp_path / "remote"), echo=commands.append)

        def start(run_id):
            commands.clear()
            controller = Controller(cluster, str(tmp_path / run_id), run_id, ssh_options=options)
            controller.start()
            try:
                assert controller.failed == {}
                assert all(info["facts"]["python"] for info in controller.node_info.values())
                return {name: handle.info["deploy"]["agent"] for name, handle in controller.handles.items()}
            finally:
                controller.stop()

        first = start("first")  # no bundle yet: each node's start says so, gets it over SFTP, tries once more
        (path,) = {item["path"] for item in first.values()}
        # Testbed nodes share one disk: a node may find the bundle its sibling just shipped.
        assert max(item["transferred_bytes"] for item in first.values()) == len(bundle.build().data)
        assert Path(path).read_bytes() == bundle.build().data

        again = start("again")  # one remote command per node, nothing sent
        assert [item["transferred_bytes"] for item in again.values()] == [0, 0]
        launches = [c for c in commands if "agent.pyz" in c and "--expect" in c]
        # The launch is the only remote command: each agent is stopped, and its log fetched, over its RPC link.
        assert len(launches) == 2 and len(commands) == 2
        assert len(list(Path(path).parent.glob("lib-*"))) == 1  # the bytecode-cached copy the first start made

        Path(path).write_bytes(b"damaged")
        damaged = start("damaged")
        assert max(item["transferred_bytes"] for item in damaged.values()) > 0
        assert Path(path).read_bytes() == bundle.build().data


def test_a_remote_dir_others_can_write_is_refused_before_anything_from_it_runs(tmp_path):
    """Planted code in the remote dir (a bundle, an unpacked lib-* copy) never runs: the launch command, sent by
    the controller, refuses a directory others can write, and re-uploads a bundle whose hash differs."""
    ran = tmp_path / "planted-code-ran"
    planted_main = f"open({str(ran)!r}, 'w').write('ran')\n"
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        cluster = load_cluster(tb.hosts_yaml)
        remote = tmp_path / "remote"
        options = SshOptions(known_hosts=tb.known_hosts, remote_dir=str(remote))

        def start(run_id):
            controller = Controller(cluster, str(tmp_path / run_id), run_id, ssh_options=options)
            controller.start()
            controller.stop()
            return controller.failed

        assert start("deploy") == {}
        shipped = bundle.build()
        path = remote / "agent" / shipped.version_dir / "agent.pyz"
        assert oct(remote.stat().st_mode & 0o777) == "0o700"   # created 0700

        # 1. A group-writable directory with a planted bundle: refused before the bundle runs.
        path.write_bytes(zipapp_bytes(planted_main))
        path.parent.chmod(0o775)
        failed = start("group-writable")
        assert set(failed) == {"node1", "node2"}
        assert all("refusing to run the agent from" in why and "writable by its group" in why and
                   str(path.parent) in why for why in failed.values()), failed
        assert not ran.exists()

        # 2. The same bundle in a directory only we can write: its hash is not the bundle's, so it is replaced
        # (uploaded again) before anything runs, and the agents start.
        path.parent.chmod(0o755)
        assert start("replaced") == {}
        assert not ran.exists() and path.read_bytes() == shipped.data

        # 3. A planted lib-* copy (what the bundle imports first) that its group can write: refused.
        lib = path.parent / f"lib-{shipped.sha256[:16]}"
        boot = lib / "pytest_meshperf" / "agent" / "boot.py"
        boot.write_text(planted_main + "def main():\n    return 0\n")
        boot.chmod(0o664)
        failed = start("planted-lib")
        assert all("refusing to run the agent from" in why and str(boot) in why for why in failed.values()), failed
        assert not ran.exists()

        # 4. An uploaded tool (--local-iperf3) is something the agent runs too: its directory is checked alike.
        import shutil
        shutil.rmtree(lib)   # the next start unpacks it again
        options = SshOptions(known_hosts=tb.known_hosts, remote_dir=str(remote),
                             local_tools={"iperf3": shutil.which("iperf3")})
        assert start("with-tool") == {}
        (tool_dir,) = (remote / "bin").glob("iperf3-*")
        tool_dir.chmod(0o777)
        failed = start("writable-tool")
        assert all("refusing to run the agent from" in why and f"{tool_dir} is writable by group and others" in why
                   for why in failed.values()), failed


def zipapp_bytes(main_source):
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", main_source)
    return buffer.getvalue()


def test_known_hosts_are_read_as_openssh_reads_them(tmp_path):
    """Every UserKnownHostsFile (not only the first), GlobalKnownHostsFile, hashed entries and HostKeyAlias."""
    import paramiko
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        keys = {line.split()[0]: line.split(None, 1)[1] for line in Path(tb.known_hosts).read_text().splitlines()}
        first, second, system = tmp_path / "first", tmp_path / "second", tmp_path / "system"
        a, b = tb.node("node1").address, tb.node("node2").address
        first.write_text("")
        second.write_text(f"{paramiko.HostKeys.hash_host(a)} {keys[a]}\n")   # node1: hashed, in the second file
        system.write_text(f"node2-alias {keys[b]}\n")                         # node2: only under its alias
        config = tmp_path / "ssh_config"
        config.write_text(f"Host {a}\n    UserKnownHostsFile {first} {second}\n    GlobalKnownHostsFile {system}\n"
                          f"Host {b}\n    HostKeyAlias node2-alias\n    UserKnownHostsFile {first}\n"
                          f"    GlobalKnownHostsFile {system}\n")
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-config", config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("host key verified") == 2
        # The alias's key is the one checked: a wrong key under it fails as a changed key would.
        system.write_text(f"node2-alias {keys[a]}\n")
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-config", config)
        assert result.returncode == 1 and "HOST KEY CHANGED" in result.stdout, result.stdout
