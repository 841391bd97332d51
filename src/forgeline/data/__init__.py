"""Reading tabular data files, splitting them and fingerprinting them (task-independent)."""

from forgeline.data.fingerprint import fingerprint_files
from forgeline.data.io import SUPPORTED_SUFFIXES, Table, read_table, write_table
from forgeline.data.split import split_frames, stratified_split

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Table",
    "fingerprint_files",
    "read_table",
    "split_frames",
    "stratified_split",
    "write_table",
]
