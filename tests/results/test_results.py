"""assembly.assemble: mesh.json, mesh.csv and the rows from real journals, however the lines came to be.

The journals are recorded from real runs (tests/data/journals/README.md).  Each test assembles a
variation of them (lines spread over worker files, duplicated, cut off, written in another shape) and
compares the result with the documented rules applied to every line parsed in full, which is how
``assemble`` once worked: first record per (source, destination, test key) in journal order (files by
name, then line), sources and destinations in inventory order, test keys sorted, each entry the record
without src, dst and test, keys in their order.
"""

import csv
import io
import json
import os
import shutil
from pathlib import Path

from pytest_meshperf.results import assemble as assembly
from pytest_meshperf.results import index as journal_index
from pytest_meshperf.results import layout, rundir

from support.meshcheck import load_strict, validate_mesh_csv, validate_mesh_file
from support.paths import DATA as TEST_DATA

DATA = TEST_DATA / "journals"


def real_lines(name):
    """The recorded journal lines (bytes, each with its newline) of data set ``name``."""
    return (DATA / name / "journal" / "main.jsonl").read_bytes().splitlines(keepends=True)


def run_dir_with(tmp_path, name, files):
    """A run directory holding data set ``name``'s run.json and the journal ``files`` (file name -> bytes)."""
    meta = json.loads((DATA / name / "run.json").read_text())
    run_id = meta["run"]["id"]
    path = tmp_path / run_id
    (path / "journal").mkdir(parents=True)
    shutil.copy(DATA / name / "run.json", path / "run.json")
    for file_name, data in files.items():
        (path / "journal" / file_name).write_bytes(data)
    return rundir.RunDir(str(tmp_path), run_id)


def copied(journal_dir):
    """Per record line of the journal, in index order: whether assemble copies it (True) or parses it in
    full (False)."""
    index = journal_index._index(str(journal_dir))
    flags = []
    for i in range(len(index)):
        with open(index.paths[index.file[i]], "rb") as handle:
            handle.seek(index.offset[i])
            line = handle.read(index.size[i])
        flags.append(bool(index.copy[i]) and assembly._skim(line, index.copy[i]) is not None)
    return flags


def expected(run_dir):
    """(sources, rows, mesh.csv's text, counts) by the documented rules, every line parsed in full, the CSV
    written by csv.writer from the parsed values."""
    meta = run_dir.read_meta()
    nodes = list(meta["cluster"]["nodes"])
    journal = os.path.join(run_dir.path, "journal")
    first = {}
    for name in sorted(os.listdir(journal)):
        with open(os.path.join(journal, name), "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    key = (record["src"], record["dst"], record["test"])
                except (ValueError, KeyError, TypeError):
                    continue
                first.setdefault(key, record)

    def rank(node):
        return (nodes.index(node) if node in nodes else len(nodes), node)

    sources, rows, counts = {}, [], {"passed": 0, "failed": 0, "error": 0}
    csv_text = io.StringIO(newline="")
    csv_writer = csv.writer(csv_text)
    csv_writer.writerow(["run_id", "src", "dst", "test", "status", "instance", "pid", "client_port", "server_port",
                         "start", "end", *layout.CSV_METRICS, "command", "error"])
    for key in sorted(first, key=lambda k: (rank(k[0]), rank(k[1]), k[2])):
        src, dst, test = key
        record = first[key]
        entry = {k: v for k, v in record.items() if k not in ("src", "dst", "test")}
        sources.setdefault(src, {"destinations": {}})["destinations"].setdefault(dst, {"tests": {}})["tests"][
            test] = entry
        messages = [t["message"] for t in record["thresholds"] if t.get("passed") is False]
        if record.get("error"):
            messages.insert(0, record["error"])
        rows.append((src, dst, test, record.get("name", test), record["status"], record["metrics"], messages,
                     record.get("warnings") or []))
        counts[record["status"]] += 1
        for inst in record["instances"] or [{}]:
            metrics = inst.get("metrics", record["metrics"])
            csv_writer.writerow([meta["run"]["id"], src, dst, test, record["status"]]
                                + [inst.get(k) for k in ("instance", "pid", "client_port", "server_port", "start",
                                                         "end")]
                                + [metrics.get(m, "") for m in layout.CSV_METRICS]
                                + [inst.get("command", ""), record.get("error") or ""])
    return sources, rows, csv_text.getvalue(), counts


def assemble_and_compare(run_dir):
    want_sources, want_rows, want_csv, want_counts = expected(run_dir)
    assembled = assembly.assemble(run_dir, 1795329999.0, False, 1)
    with open(run_dir.mesh_json, encoding="utf-8") as handle:
        doc = json.load(handle)
    # Equal, and in the same order (sources, destinations, tests, and the keys of every entry).
    assert json.dumps(doc["sources"]) == json.dumps(want_sources)
    assert doc["run"]["finished"] == "2026-11-22T06:46:39.000000Z" and doc["run"]["exit_status"] == 1
    assert doc["cluster"] == run_dir.read_meta()["cluster"]
    assert [(r.src, r.dst, r.test, r.name, r.status, r.metrics, r.messages, r.warnings)
            for r in assembled.rows] == want_rows
    assert assembled.counts == want_counts
    with open(run_dir.csv, newline="", encoding="utf-8") as handle:
        assert handle.read() == want_csv
    # Strict JSON, and mesh.csv agrees with it.  (The schema is checked on a live run below: these
    # recorded records follow the schema of the day they were recorded.)
    validate_mesh_csv(run_dir.csv, load_strict(run_dir.mesh_json))
    return doc, assembled


def test_real_journal_is_copied_without_parsing_whole_lines(tmp_path):
    run_dir = run_dir_with(tmp_path, "local3", {"main.jsonl": b"".join(real_lines("local3"))})
    assert copied(os.path.join(run_dir.path, "journal")) == [True] * 14   # none needs a full parse
    doc, assembled = assemble_and_compare(run_dir)
    assert assembled.counts == {"passed": 10, "failed": 2, "error": 2}
    assert list(doc["sources"]) == ["node1", "node2", "node3"]
    assert list(doc["sources"]["node1"]["destinations"]["node2"]["tests"]) == [
        "test_rec.py::test_bad_congestion", "test_rec.py::test_tcp", "test_rec.py::test_tcp_too_slow",
        "test_rec.py::test_udp", "test_rec.py::test_udp#2"]
    failed = [r for r in assembled.rows if r.status == "failed"]
    assert failed and all(r.messages and "1000 Tbit/s" in r.messages[0] for r in failed)
    errors = [r for r in assembled.rows if r.status == "error"]
    assert errors and all("congestion" in r.messages[0] for r in errors)


def test_records_with_several_instances(tmp_path):
    run_dir = run_dir_with(tmp_path, "instances2", {"main.jsonl": b"".join(real_lines("instances2"))})
    # node_load's "src" and "dst" objects do not look like a second record: the lines are copied.
    assert copied(os.path.join(run_dir.path, "journal")) == [True, True]
    doc, assembled = assemble_and_compare(run_dir)
    with open(run_dir.csv, newline="", encoding="utf-8") as handle:
        instances = [row[5] for row in list(csv.reader(handle))[1:]]
    assert instances == ["1", "2", "1", "2"]
    assert all(row.warnings and "CPU-bound" in row.warnings[0] for row in assembled.rows)   # as recorded


def test_worker_files_are_read_in_name_order_and_the_first_record_of_a_key_wins(tmp_path, monkeypatch):
    lines = real_lines("local3")
    tcp_1_2, udp2_1_2 = lines[0], lines[11]
    assert b'"test":"test_rec.py::test_tcp"' in tcp_1_2 and b'"dst":"node2"' in tcp_1_2
    # The same measurement key again, with other real content: udp#2 of node1->node2 filed as test_udp.
    rerun = udp2_1_2.replace(b'"test":"test_rec.py::test_udp#2"', b'"test":"test_rec.py::test_udp"', 1)
    files = {
        "gw0.jsonl": b"".join(lines[8:10]) + rerun,     # gw0 sorts first: its test_udp record wins over lines[10]
        "gw1.jsonl": b"".join(reversed(lines[:4])),     # journal order is not mesh order
        "gw10.jsonl": b"".join(lines[4:8]),
        "gw2.jsonl": b"".join(lines[10:]) + tcp_1_2,    # a second node1->node2 test_tcp: the first one wins
    }
    monkeypatch.setattr(assembly, "READ_BATCH_BYTES", 1)   # one line per read batch: keys cross batches
    run_dir = run_dir_with(tmp_path, "local3", files)
    doc, _ = assemble_and_compare(run_dir)
    udp = doc["sources"]["node1"]["destinations"]["node2"]["tests"]["test_rec.py::test_udp"]
    assert udp["instances"][0]["pid"] == json.loads(udp2_1_2)["instances"][0]["pid"]


def test_a_torn_last_line_is_skipped_and_a_complete_one_without_newline_is_kept(tmp_path):
    lines = real_lines("local3")
    torn = lines[12][: len(lines[12]) // 2]
    complete = lines[13].rstrip(b"\n")
    run_dir = run_dir_with(tmp_path, "local3", {"gw0.jsonl": b"".join(lines[:6]) + torn,
                                                "gw1.jsonl": b"".join(lines[6:12]) + complete})
    doc, assembled = assemble_and_compare(run_dir)
    assert len(assembled.rows) == 13
    keys = {(src, dst, test) for src, s in doc["sources"].items() for dst, d in s["destinations"].items()
            for test in d["tests"]}
    assert ("node3", "node1", "test_rec.py::test_udp") not in keys      # the torn one (lines[12])
    assert ("node3", "node1", "test_rec.py::test_udp#2") in keys        # lines[13], no newline


def test_a_line_torn_and_then_appended_to_is_skipped(tmp_path):
    lines = real_lines("local3")
    # A writer died mid-line, another appended to the same file: the two are one line now.
    joined = lines[2][:3000] + lines[3]
    run_dir = run_dir_with(tmp_path, "local3", {"main.jsonl": b"".join(lines[:2]) + joined
                                                + b"".join(lines[4:])})
    assert copied(os.path.join(run_dir.path, "journal")) == [True] * 12
    _, assembled = assemble_and_compare(run_dir)
    assert len(assembled.rows) == 12


def test_lines_in_another_shape_are_parsed_in_full(tmp_path):
    lines = real_lines("local3")
    spaced = (json.dumps(json.loads(lines[0])) + "\n").encode()               # ", " and ": "
    record = json.loads(lines[8])
    reordered = (json.dumps(dict(reversed(list(record.items()))), separators=(",", ":")) + "\n").encode()
    record = json.loads(lines[9])
    del record["name"]   # as journaled before the fixture added it: copied, its tail parsed in full
    unnamed = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    run_dir = run_dir_with(tmp_path, "local3", {"main.jsonl": spaced + b"".join(lines[1:8]) + reordered
                                                + unnamed + b"".join(lines[10:])})
    assert copied(os.path.join(run_dir.path, "journal")) == [False] + [True] * 7 + [False] + [True] * 5
    _, assembled = assemble_and_compare(run_dir)
    assert [r.name for r in assembled.rows if r.src == "node2" and r.dst == "node3"] == [
        "test_rec.py::test_bad_congestion", "test_tcp", "test_tcp_too_slow"]


def test_test_keys_that_need_escaping_and_quoting(tmp_path):
    """A parametrized test's key can hold anything its ids hold: JSON escapes it, mesh.csv quotes it."""
    lines = real_lines("local3")
    renamed = [line.replace(b'"test":"test_rec.py::test_tcp"', b'"test":"test_rec.py::test_tcp[1,\\"x\\"]"', 1)
               for line in lines]
    assert sum(a != b for a, b in zip(lines, renamed)) == 6
    plain = run_dir_with(tmp_path / "plain", "local3", {"main.jsonl": b"".join(renamed)})
    assert copied(os.path.join(plain.path, "journal")) == [True] * 14
    with_index = journaled(tmp_path / "indexed", "local3", {"main.jsonl": renamed})
    assert indexed(with_index) == 14
    for run_dir in (plain, with_index):
        doc, _ = assemble_and_compare(run_dir)
        assert 'test_rec.py::test_tcp[1,"x"]' in doc["sources"]["node1"]["destinations"]["node2"]["tests"]
        with open(run_dir.csv, "rb") as handle:
            assert b',"test_rec.py::test_tcp[1,""x""]",' in handle.read()


def test_nodes_outside_the_inventory_come_after_it_by_name(tmp_path):
    run_dir = run_dir_with(tmp_path, "local3", {"main.jsonl": b"".join(real_lines("local3"))})
    meta = run_dir.read_meta()
    del meta["cluster"]["nodes"]["node1"]
    run_dir.write_meta(meta["run"], meta["cluster"])
    doc, _ = assemble_and_compare(run_dir)
    assert list(doc["sources"]) == ["node2", "node3", "node1"]
    assert list(doc["sources"]["node2"]["destinations"]) == ["node3", "node1"]


def journaled(tmp_path, name, groups):
    """A run directory whose journal files were written by Journal.append, with their index: ``groups`` is
    file name -> the recorded lines to append to it.  The journal then holds the recorded lines as they
    were (json.dumps of json.loads of them is the same text)."""
    run_dir = run_dir_with(tmp_path, name, {})
    for file_name, lines in groups.items():
        journal = run_dir.journal(file_name[:-len(".jsonl")])
        for line in lines:
            journal.append(json.loads(line))
        journal.close()
        assert (Path(journal.path)).read_bytes() == b"".join(lines)
    return run_dir


def indexed(run_dir):
    """How many records the index gives (the others are read from the journal)."""
    index = journal_index._index(os.path.join(run_dir.path, "journal"), os.path.join(run_dir.path, "index"))
    return sum(1 for size in index.line_size if size)


def test_journal_append_writes_an_index_that_gives_the_same_files(tmp_path):
    lines = real_lines("local3")
    rerun = lines[11].replace(b'"test":"test_rec.py::test_udp#2"', b'"test":"test_rec.py::test_udp"', 1)
    run_dir = journaled(tmp_path, "local3", {"gw0.jsonl": lines[7:] + [rerun], "gw1.jsonl": lines[:7]})
    assert sorted(os.listdir(os.path.join(run_dir.path, "index"))) == ["gw0.jsonl", "gw1.jsonl"]
    assert indexed(run_dir) == 15
    doc, _ = assemble_and_compare(run_dir)
    udp = doc["sources"]["node1"]["destinations"]["node2"]["tests"]["test_rec.py::test_udp"]
    pids = [json.loads(line)["instances"][0]["pid"] for line in (lines[10], rerun)]
    assert pids[0] != pids[1] and udp["instances"][0]["pid"] == pids[0]   # the first one


def test_index_of_several_instances_and_warnings(tmp_path):
    run_dir = journaled(tmp_path, "instances2", {"main.jsonl": real_lines("instances2")})
    assert indexed(run_dir) == 2
    _, assembled = assemble_and_compare(run_dir)
    assert all(row.warnings for row in assembled.rows)


def test_index_lines_lost_or_cut_off_leave_the_journal_to_be_read(tmp_path):
    lines = real_lines("local3")
    run_dir = journaled(tmp_path, "local3", {"main.jsonl": lines})
    index_file = Path(run_dir.path) / "index" / "main.jsonl"
    entries = index_file.read_bytes().splitlines(keepends=True)
    # The last three index lines never written, the one before cut off in the middle:
    index_file.write_bytes(b"".join(entries[:10]) + entries[10][:100])
    assert indexed(run_dir) == 10
    assemble_and_compare(run_dir)
    # No index line at all in the middle: the gap is read from the journal.
    index_file.write_bytes(b"".join(entries[:3] + entries[6:]))
    assert indexed(run_dir) == 11
    assemble_and_compare(run_dir)


def test_an_index_that_does_not_match_the_journal_is_not_used(tmp_path, monkeypatch):
    lines = real_lines("local3")
    run_dir = journaled(tmp_path, "local3", {"main.jsonl": lines})
    # The journal rewritten in another order, same size: the index points at the wrong records.
    (Path(run_dir.path) / "journal" / "main.jsonl").write_bytes(b"".join(reversed(lines)))
    attempts = []
    real = assembly._assemble

    def spy(*args, **kwargs):
        attempts.append(kwargs["use_index"])
        return real(*args, **kwargs)

    monkeypatch.setattr(assembly, "_assemble", spy)
    assemble_and_compare(run_dir)
    assert attempts == [True, False]


def test_a_record_appended_after_a_torn_line_is_recovered_with_the_index(tmp_path):
    lines = real_lines("local3")
    run_dir = journaled(tmp_path, "local3", {"main.jsonl": lines[:2]})
    with open(os.path.join(run_dir.path, "journal", "main.jsonl"), "ab") as handle:
        handle.write(lines[2][:3000])   # a writer killed in the middle of this line
    journal = run_dir.journal("main")   # a later writer of the same file
    journal.append(json.loads(lines[3]))
    journal.close()
    assert indexed(run_dir) == 3
    assembled = assembly.assemble(run_dir, 1795329999.0, False, 1)
    # Without the index the joined line is not JSON and both records in it are lost; with it, only the
    # torn one (node3->node1) is.  Mesh order: node1->node2, node1->node3, node2->node3.
    want = [json.loads(lines[i]) for i in (0, 3, 1)]
    assert [(r.src, r.dst, r.test) for r in assembled.rows] == [(w["src"], w["dst"], w["test"]) for w in want]
    doc = load_strict(run_dir.mesh_json)
    assert doc["sources"]["node1"]["destinations"]["node3"]["tests"]["test_rec.py::test_tcp"] == {
        k: v for k, v in want[1].items() if k not in ("src", "dst", "test")}
    validate_mesh_csv(run_dir.csv, doc)


def test_an_empty_journal_gives_a_valid_empty_mesh(tmp_path):
    run_dir = run_dir_with(tmp_path, "local3", {"main.jsonl": b""})
    doc, assembled = assemble_and_compare(run_dir)
    assert doc["sources"] == {} and assembled.rows == []


RUN_TEST = """
import pytest

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    measure()

@pytest.mark.meshperf(duration=1, congestion="no_such_algorithm")
def test_bad_congestion(mesh_pair, measure):
    measure()
"""


def test_a_real_runs_journal_lines_have_the_shape_assemble_copies(pytester, mesh_out):
    """Measurement.to_record() keeps src, dst, test first and status, metrics, instances, thresholds in
    that order; otherwise every line is parsed in full: correct, but far too slow for 10^6 records."""
    pytester.makepyfile(test_mesh=RUN_TEST)
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:2")
    result.assert_outcomes(passed=2, errors=2)
    flags = copied(mesh_out / "latest" / "journal")
    assert flags == [True] * 4, f"assemble would parse some journal lines in full (False): {flags}"
    validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
