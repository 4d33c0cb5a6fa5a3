"""Files that ship with meshperf: the standard profiles (profiles/NAME.yaml)."""
