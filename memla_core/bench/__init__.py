"""The MKEB benchmark: run editing methods over facts and languages, resumably and in parallel,
and summarise the rows into the paper's Tables 3-6 (docs/benchmarks.md); many edits at once or in
a row with ``run_series`` (docs/batch_and_sequential.md)."""

from .config import (
    BenchConfig,
    BenchConfigError,
    MethodRun,
    ablation_methods,
    canonical_method,
    resolve_method,
    speed_overrides,
)
from .job import BenchJob, JobStatus, results_dir, results_files
from .distributed import ProcessContext, process_context
from .paper import PAPER_DIR, PaperTables, load_paper_tables
from .runner import BenchOutcome, run_bench, run_group, select_facts
from .series import SeriesConfig, SeriesOutcome, run_series
from .series_summaries import curve_table, series_summary
from .store import KEY_COLUMNS, METRIC_COLUMNS, RESULT_COLUMNS, TIMING_COLUMNS, read_results
from .summaries import (
    ablation_table,
    ablation_table_wide,
    compare_with_paper,
    coverage,
    main_table,
    main_table_wide,
    multihop_table,
    multihop_table_wide,
    target_means,
    write_summaries,
)

__all__ = [
    "BenchConfig",
    "BenchConfigError",
    "BenchJob",
    "JobStatus",
    "BenchOutcome",
    "KEY_COLUMNS",
    "METRIC_COLUMNS",
    "MethodRun",
    "PAPER_DIR",
    "PaperTables",
    "ProcessContext",
    "RESULT_COLUMNS",
    "SeriesConfig",
    "SeriesOutcome",
    "TIMING_COLUMNS",
    "ablation_methods",
    "ablation_table",
    "ablation_table_wide",
    "canonical_method",
    "compare_with_paper",
    "coverage",
    "curve_table",
    "load_paper_tables",
    "main_table",
    "main_table_wide",
    "multihop_table",
    "multihop_table_wide",
    "process_context",
    "read_results",
    "results_dir",
    "results_files",
    "resolve_method",
    "run_bench",
    "run_group",
    "run_series",
    "select_facts",
    "series_summary",
    "speed_overrides",
    "target_means",
    "write_summaries",
]
