"""Data preparation for the experiment kit: dataset files -> verl's parquet schema (``verl-rlif prepare-data``).

Pure Python plus pandas/pyarrow (no verl import). The output layout, and the code-dataset schema the ``code``
extractor reads, are in docs/data.md.
"""

from verl_rlif.data.prepare import Summary, default_output, prepare
from verl_rlif.data.readers import DataError
from verl_rlif.data.sources import SOURCES

__all__ = ["SOURCES", "DataError", "Summary", "default_output", "prepare"]
