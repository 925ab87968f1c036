"""The Benchmark page's parts: a run form, the live view of a running job, and a run's tables
next to the paper's. The run itself is ``memla_core.bench.BenchJob`` on a background thread, so
the page stays usable (and other pages too) while it computes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from memla_core.bench import BenchConfig, BenchJob, JobStatus, results_dir, results_files, speed_overrides
from memla_core.bench.job import find_job, running_jobs
from memla_core.bench.lock import holder as lock_holder
from memla_core.bench.config import STEPS_ALIAS, canonical_method, resolve_method
from memla_core.bench.mismatch import file_overrides, file_seed, setting_differences
from memla_core.bench.plan import resume_plan
from memla_core.bench.series import SeriesConfig, check_batchable
from memla_core.bench.series_summaries import curve_table, curve_table_wide
from memla_core.bench.store import CUT_OFF_LINE, is_series, parse_results, read_all
from memla_core.bounds import check_results_name
from memla_core.bench.summaries import (
    AVG,
    ablation_table,
    ablation_table_wide,
    coverage,
    main_table,
    main_table_wide,
    multihop_table,
    multihop_table_wide,
    run_totals,
)
from memla_core.bench.uncertainty import MIN_FACTS, avg_label, cell_statistics
from memla_core.charts import difference_heatmap, grouped_bars, score_heatmap
from memla_core.evaluation import TOKEN_ACCURACY
from memla_core.editing import METHODS
from memla_core.editing.memla import ABLATIONS
from memla_core.neurons import NeuronConfig
from memla_core.views import (
    ablation_grid,
    difference_grid,
    display_table,
    language_label,
    main_results_grid,
    multihop_grid,
    prompt_length_grid,
    readable_results,
    source_target_grid,
)

from . import state
from .resources import get_model, is_loaded, paper
from .series_panel import series_section
from .sidebar import method_title
from .sweep_panel import is_sweep, sweep_section
from .widgets import PAGES, bound, error_message, table

POLL_SECONDS = 2.0
"""How often the live view of a running benchmark refreshes."""


# --------------------------------------------------------------------------- launching


UPLOAD_FIX = "upload a CSV written by `memla bench` or downloaded from this page (All rows)"


def _exists(path: str) -> bool:
    """A remembered results path that the filesystem may refuse (too long) counts as missing."""
    try:
        return Path(path).exists()
    except OSError:
        return False


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _start(config: BenchConfig, lm, dataset, series: SeriesConfig | None = None) -> None:
    try:
        job = BenchJob(config, lm, dataset, series).start()
    except ValueError as err:  # BenchConfigError: another job writes this file
        state.notify(error_message(err, "Starting the benchmark"))
        return
    st.session_state[state.BENCH_JOB] = job
    st.session_state[state.BENCH_FILE] = str(config.out)


def run_panel() -> None:
    """The form that starts a run, or the live view of this session's running one."""
    spec = state.model_spec()
    if spec is None or not is_loaded(spec):
        st.info("Load a model on the Setup page first; the benchmark edits that model.")
        st.page_link(PAGES["home"], label="Go to Setup", icon=":material/settings:")
        return
    job = _session_job()
    if job is not None and job.status().active:
        job_monitor(job)
        return
    if job is not None:
        _show_finished(job)
    _other_runs(job)
    if st.session_state.get(PENDING_MISMATCH):
        _resolve_mismatch(get_model(spec), state.dataset())
        return
    _run_form(get_model(spec), spec)


def _session_job() -> BenchJob | None:
    """This session's run; in a new session (a reload: its results file came back from the URL),
    the run of this server that still writes that file, found again by its path."""
    job: BenchJob | None = st.session_state[state.BENCH_JOB]
    current = st.session_state[state.BENCH_FILE]
    from_link, st.session_state[state.BENCH_FROM_LINK] = st.session_state[state.BENCH_FROM_LINK], False
    if job is None and current and from_link:
        found = find_job(Path(current))
        if found is not None and found.status().active:
            _attach(found)
            job = found
    return job


def _attach(job: BenchJob) -> None:
    """Watch a run this session did not start; the form takes its settings, so that once it is
    stopped, Start resumes it rather than offering the defaults."""
    st.session_state[state.BENCH_JOB] = job
    st.session_state[state.BENCH_FILE] = str(job.config.out)
    _form_from_config(job.config, job.series)


KINDS = {
    "single": "Single edits (paper Tables 3–6)",
    "sequential": "Edits in a row (sequential)",
    "batch": "Facts in batches (one edit each)",
}
"""The kinds of run the form starts: ``memla bench``, ``--sequential N``, ``--batch-size k``."""


def _form_from_config(config: BenchConfig, series: SeriesConfig | None = None) -> None:
    variants = [name.partition(":")[2] for name in config.methods if name.startswith("memla:")]
    common = config.common_overrides
    values = {
        "methods": [name for name in config.methods if name in METHODS],
        "variants": [name for name in variants if name in ABLATIONS],
        "sources": list(config.source_languages),
        "targets": list(config.target_languages or []),
        "facts": list(config.fact_ids),
        "seed": config.seed,
        "ig_steps": common.get("neurons.steps", NeuronConfig().steps),
        "edit_steps": common.get(STEPS_ALIAS),
        "name": config.out.stem,
        "overwrite": False,
    }
    if config.limit is not None:
        values["limit"] = config.limit
    values["kind"] = series.kind if series else "single"
    if series is not None and series.kind == "sequential":
        values["chain"], values["eval_every"] = series.edits, series.eval_every
    elif series is not None:
        values["batch"] = series.edits
    for field, value in values.items():
        state.reset_setting(state.bench_setting(field), value)


def _other_runs(shown: BenchJob | None) -> None:
    """Runs still writing a results file that this session does not watch: this server's (started
    before a reload, or by another session) with a button to watch and stop them; another
    process's (``memla bench``), from its lock file, named."""
    mine = [job for job in running_jobs() if job is not shown]
    for job in mine:
        status = job.status()
        left, right = st.columns([3, 1])
        left.info(f"A benchmark is still writing **{job.config.out.name}**: {_status_line(status)}.",
                  icon=":material/sync:")
        right.button("Show its progress and Stop", key=f"attach:{job.path}", on_click=_attach, args=(job,),
                     icon=":material/visibility:")
    ours = {job.path for job in mine} | ({shown.path} if shown is not None else set())
    for path in results_files():
        held = lock_holder(path)
        if held is not None and path.resolve() not in ours and held.pid != os.getpid():
            st.caption(f":material/lock: {path.name} is being written by another run ({held.describe()}), e.g. "
                       "`memla bench`; its rows appear under *Results next to the paper* as they are saved. Stop it "
                       "where it was started.")


def _form_setting(field: str, allowed: list | None = None, default=None):
    """The session key of one field of the run form; values no longer offered (another dataset)
    are dropped, so the form keeps what it can after a run, a page switch or a dataset change."""
    name = state.bench_setting(field)
    if allowed is not None:
        for key in (name, state.widget_key(name)):
            value = st.session_state.get(key)
            if isinstance(value, list):
                st.session_state[key] = [item for item in value if item in allowed]
            elif value is not None and value not in allowed:
                st.session_state[key] = default
    return name


def _run_form(lm, spec) -> None:
    data = state.dataset()
    languages = sorted(data.languages, key=lambda c: (c != "en", c))
    fact_ids = [f.example_id for f in data]
    # Every field is bound to the session (widgets.bound): the form shows the values of the last run
    # after it finishes, not the defaults.
    with st.form("bench_form"):
        st.markdown(f"Model **{spec.name_or_path}**, dataset **{data.name}** ({len(data)} facts) — change them on Setup and Facts.")
        c1, c2 = st.columns(2)
        methods = bound(c1.multiselect, "Methods", _form_setting("methods"), default=["memla", "ft"], options=list(METHODS),
                        format_func=method_title)
        variants = bound(c2.multiselect, "MEMLA ablations (paper Table 5)", _form_setting("variants"), default=[],
                         options=list(ABLATIONS[1:]),
                         help="Each variant is one more method; they share MEMLA's knowledge neurons.")
        c1, c2 = st.columns(2)
        sources = bound(c1.multiselect, "Edit made in (source languages)", _form_setting("sources", languages),
                        default=["en"] if "en" in languages else languages[:1], options=languages,
                        format_func=language_label, help="The paper: English (Table 3) and Chinese (Table 4).")
        targets = bound(c2.multiselect, "Evaluated in (target languages)", _form_setting("targets", languages),
                        default=[], options=languages, format_func=language_label,
                        placeholder="every language of each fact", help="Leave empty for every language, as in the paper.")
        c1, c2, c3 = st.columns(3)
        limit = bound(c1.number_input, "Number of facts (the first N)",
                      _form_setting("limit", list(range(1, len(data) + 1)), min(3, len(data))),
                      default=min(3, len(data)), min_value=1, max_value=len(data))
        chosen = bound(c2.multiselect, "…or exactly these facts", _form_setting("facts", fact_ids), default=[],
                       options=fact_ids, placeholder="the first N", format_func=lambda fid: data.get(fid).label)
        seed = bound(c3.number_input, "Seed", _form_setting("seed"), default=0, min_value=0, step=1)
        c1, c2, c3 = st.columns(3)
        ig_steps = bound(c1.number_input, "IG steps (knowledge neurons)", _form_setting("ig_steps"),
                         default=NeuronConfig().steps, min_value=1,
                         help="Fewer steps: faster, rougher neurons. The paper uses 20.")
        edit_steps = bound(c2.number_input, "Edit steps", _form_setting("edit_steps"), default=None, min_value=1,
                           placeholder="each method's default",
                           help="Optimisation steps of every edit (MEMLA max_steps, ROME v_steps …).")
        name = bound(c3.text_input, "Results file", _form_setting("name"),
                     default=f"{_file_name(spec.name_or_path.split('/')[-1])}-{dt.date.today():%Y%m%d}",
                     help=f"Saved as <name>.csv in {results_dir()}. A name used before resumes that run.")
        c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
        kind = bound(c1.radio, "Kind of run", _form_setting("kind", list(KINDS), "single"), default="single",
                     options=list(KINDS), format_func=KINDS.get,
                     help="Many edits in one model (docs/batch_and_sequential.md): in a row, each on top of the last, "
                          "or k facts per edit. Both score the edits still held, NS and general ability as they go.")
        chain = bound(c2.number_input, "Edits in a row (N)", _form_setting("chain"), default=10, min_value=1,
                      help="Sequential: the first N of the chosen facts, pushed one after another.")
        eval_every = bound(c3.number_input, "Score every E edits", _form_setting("eval_every"), default=5, min_value=1,
                           help="Sequential: scoring every held edit is the slow part; it also runs after the last.")
        batch = bound(c4.number_input, "Facts per batch (k)", _form_setting("batch"), default=5, min_value=1,
                      help="Batches: MEMLA, FT-L, MEMIT, PMET and IKE edit k facts at once.")
        overwrite = bound(st.checkbox, "Discard the rows already in this results file (otherwise the run resumes)",
                          _form_setting("overwrite"), default=False)
        submitted = st.form_submit_button("Start the benchmark", type="primary", icon=":material/play_arrow:")
    st.caption("Single edits: each (fact, method, source language) edits the unedited model, scores every target "
               "language and reverts; in a row or in batches the edits stay on the model as the run goes. Gemma 3 "
               "270M on a laptop CPU: FT-L, IKE and MEMLA seconds per edit (the bundled facts' knowledge neurons "
               "ship with memla; a new fact's take 1–2 min once), ROME/MEMIT/PMET about 1 min, and about 5 s to "
               "score an edit in 12 languages.")
    if not submitted:
        return
    if not methods or not sources or not _file_name(name):
        st.error("Choose at least one method and one source language, and give the results file a name.")
        return
    try:
        stem = check_results_name(_file_name(name))
    except ValueError as err:
        st.error(str(err))
        return
    try:
        config = BenchConfig(
            model=spec,
            dataset=data.name,
            methods=tuple(methods) + tuple(canonical_method(f"memla:{v}") for v in variants),
            source_languages=tuple(sources),
            target_languages=tuple(targets) or None,
            fact_ids=tuple(chosen),
            limit=None if chosen else int(limit),
            seed=int(seed),
            common_overrides=speed_overrides(ig_steps=int(ig_steps), edit_steps=None if edit_steps is None else int(edit_steps)),
            out=results_dir() / f"{stem}.csv",
            overwrite=overwrite,
        )
    except ValueError as err:
        st.error(error_message(err, "Starting the benchmark"))
        return
    if kind != "single":
        series = SeriesConfig("sequential", int(chain), int(eval_every)) if kind == "sequential" \
            else SeriesConfig("batch", int(batch))
        try:
            if series.kind == "batch":
                check_batchable(config.methods)
        except ValueError as err:  # BenchConfigError naming the methods that can batch
            st.error(error_message(err, "Starting the benchmark"))
            return
        _launch_series(config, series, lm, data)
        st.rerun()
    differences = _differences(config, lm)
    if differences:  # asked on the next runs, outside the form: resume with the file's settings, or a new file
        st.session_state[PENDING_MISMATCH] = (config, differences)
    elif not _launch(config, lm, data):
        return
    st.rerun()


def _launch(config: BenchConfig, lm, data) -> bool:
    """Say what the run will do to its file, then start it; a file that already holds every edit
    of these settings is not run again (nothing would be computed), and a file this server is still
    writing shows that run. False: an error is shown."""
    running = find_job(config.out)
    if running is not None and running.status().active:
        _attach(running)
        state.notify(f"A benchmark is already writing {config.out.name}: here is its progress. Stop it to start "
                     "another run on that file, or choose another results file.")
        return True
    try:
        plan = resume_plan(config, lm, data)
    except ValueError as err:  # BenchConfigError: e.g. a language none of the chosen facts has
        st.error(error_message(err, "Starting the benchmark"))
        return False
    st.session_state[state.BENCH_FILE] = str(config.out)
    if plan.nothing_left:
        state.notify(f"{plan.describe()} Their tables are under *Results next to the paper*. To compute them "
                     "again, tick *Discard the rows already in this results file*; for other facts or methods, "
                     "change the form.")
        return True
    state.notify(plan.describe())
    _start(config, lm, data)
    return True


def _launch_series(config: BenchConfig, series: SeriesConfig, lm, data) -> None:
    """Start a sequential or batch run; ``run_series`` itself refuses a file holding another kind
    of run or other settings, and the page then shows its message."""
    running = find_job(config.out)
    if running is not None and running.status().active:
        _attach(running)
        state.notify(f"A benchmark is already writing {config.out.name}: here is its progress.")
        return
    st.session_state[state.BENCH_FILE] = str(config.out)
    what = (f"{series.edits} edits of each method in a row, scored every {series.eval_every}"
            if series.kind == "sequential" else f"the facts in batches of {series.edits}")
    resumed = "" if config.overwrite or not config.out.exists() else f" Steps already in {config.out.name} are kept."
    state.notify(f"Starting {what} into {config.out.name}.{resumed}")
    _start(config, lm, data, series)


PENDING_MISMATCH = "bench_pending_mismatch"


def _differences(config: BenchConfig, lm) -> list[str]:
    if config.overwrite or not config.out.exists():
        return []
    methods = [resolve_method(name, lm, config) for name in config.methods]
    return setting_differences(read_all(config.out), methods, lm.key, config.seed)


def _resolve_mismatch(lm, data) -> None:
    """The results file holds rows computed with other settings: say which, and offer the two ways on."""
    config, differences = st.session_state[PENDING_MISMATCH]
    st.warning(f"**{config.out.name} was computed with other settings**, so this run cannot add to it as it is:\n\n"
               + "\n".join(f"- {line}" for line in differences), icon=":material/warning:")
    existing = read_all(config.out)
    same_model = not any(line.startswith("model:") for line in differences)
    left, right, cancel = st.columns(3)
    if left.button("Resume with the file's settings", disabled=not same_model, type="primary",
                   help=None if same_model else "The file was computed with another model: load that model first."):
        methods = [resolve_method(name, lm, config) for name in config.methods]
        overrides = {**{k: dict(v) for k, v in config.method_overrides.items()}}
        for name, fields in file_overrides(existing, methods).items():
            overrides[name] = {**overrides.get(name, {}), **fields}
        st.session_state.pop(PENDING_MISMATCH)
        if _launch(dataclasses.replace(config, method_overrides=overrides, seed=file_seed(existing, config.seed)), lm, data):
            st.rerun()
    if right.button("Start a new file with these settings"):
        stem, number = config.out.stem, 2
        while (config.out.parent / f"{stem}-{number}.csv").exists():
            number += 1
        st.session_state.pop(PENDING_MISMATCH)
        if _launch(dataclasses.replace(config, out=config.out.parent / f"{stem}-{number}.csv"), lm, data):
            st.rerun()
    if cancel.button("Change the settings"):
        st.session_state.pop(PENDING_MISMATCH)
        st.rerun()


def _status_line(status: JobStatus) -> str:
    minutes, seconds = divmod(int(status.elapsed_s), 60)
    done = "step(s)" if status.unit == "steps" else "edit(s)"
    return (f"{status.facts_done}/{status.facts_total} {status.unit}, {status.groups_computed} {done} done "
            f"({status.groups_failed} failed) in {minutes} min {seconds:02d} s")


@st.fragment(run_every=POLL_SECONDS)
def job_monitor(job: BenchJob) -> None:
    """Progress, a Stop button and the rows so far; refreshes itself until the job ends."""
    status = job.status()
    if not status.active:
        st.rerun()  # the whole page: the form and the finished run's tables come back
    st.progress(status.fraction, text=f"Running: {status.current or 'starting …'}")
    st.caption(f"{_status_line(status)} → `{job.config.out}`. You can use other pages meanwhile.")
    if job.token.cancelled:
        st.info("Stopping within one optimisation step; every finished edit is already saved.")
    elif st.button("Stop the benchmark", icon=":material/stop:", key="bench_stop"):
        job.cancel()
        st.info("Stopping within one optimisation step; every finished edit is already saved.")
    rows = job.results()
    if not rows.empty and is_series(rows):
        curve = curve_table(rows)
        if not curve.empty:  # the charts are under *Results next to the paper*
            st.markdown("**Steps so far** (averaged over the targets other than the edit language)")
            st.dataframe(display_table(curve_table_wide(curve, AVG)), hide_index=True)
    elif not rows.empty:
        st.markdown("**Finished edits so far** (mean over target languages)")
        done = rows.groupby(["fact_id", "method", "source_lang"], sort=False)[["ES", "PS", "NS", "QS", "seconds_edit"]].mean()
        st.dataframe(display_table(readable_results(done.reset_index().tail(15))), hide_index=True)


def _show_finished(job: BenchJob) -> None:
    status = job.status()
    if status.state == "done":
        st.success(f"The last run finished: {_status_line(status)}. Its tables are under *Results next to the paper*.")
    elif status.state == "cancelled":
        st.info(f"The last run was stopped: {_status_line(status)}. Start it again with the same results file to resume.")
    elif job.error is not None:
        st.error(error_message(job.error, "The benchmark"))


# --------------------------------------------------------------------------- results


def _choose_results() -> tuple[pd.DataFrame, str] | None:
    files = results_files()
    current = st.session_state[state.BENCH_FILE]
    names = [str(p) for p in files]
    if current and current not in names and _exists(current):
        names.insert(0, current)
    c1, c2 = st.columns(2)
    upload = c2.file_uploader("…or a results CSV from `memla bench`", type=["csv"], key="bench_upload")
    if upload is not None:
        try:
            frame = parse_results(upload.getvalue().decode("utf-8"), upload.name, fix=UPLOAD_FIX)
        except UnicodeDecodeError:
            st.error(f"{upload.name} is not UTF-8 text; upload the CSV as `memla bench` or this page wrote it.")
            return None
        except ValueError as err:
            st.error(error_message(err, "Reading the uploaded file"))
            return None
        if frame.attrs.get(CUT_OFF_LINE):
            st.warning(f"The last line of {upload.name} is cut off (the run that wrote it was interrupted), so it is "
                       f"left out: `{frame.attrs[CUT_OFF_LINE][:80]}`. Every other row is shown.")
        return frame, upload.name
    if not names:
        c1.info("No benchmark results yet: start a run in the first tab, or upload a results CSV.")
        return None
    index = names.index(current) if current in names else 0
    chosen = c1.selectbox("Results file", names, index=index, format_func=lambda p: Path(p).name,
                          help=f"Runs started here are saved in {results_dir()}.")
    st.session_state[state.BENCH_FILE] = chosen
    return read_all(Path(chosen)), Path(chosen).name


def results_panel() -> None:
    """A run's summary tables as heatmaps, each next to the paper's and their difference."""
    picked = _choose_results()
    if picked is None:
        return
    results, name = picked
    if results.empty:
        st.info(f"{name} has no rows yet.")
        return
    if is_series(results):  # many edits at once or in a row: curves, not the paper's tables
        series_section(results, Path(name).stem)
        with st.expander("All rows"):
            table(results, f"{Path(name).stem} rows", styled=display_table(readable_results(results)))
        return
    totals = run_totals(results)
    cols = st.columns(4)
    cols[0].metric("Facts", totals["facts"])
    cols[1].metric("Edits", totals["edits"])
    cols[2].metric("Failed edits", totals["failed"])
    cols[3].metric("Compute time", f"{totals['seconds'] / 60:.1f} min")
    st.caption("Our numbers come from your model and facts; the paper's from mGPT 1.3B on the full MKEB. "
               "Differences are ours − paper, in percentage points: blue above the paper, red below, grey where "
               f"the paper's value lies inside our 95% bootstrap interval over facts. Cells over fewer than {MIN_FACTS} "
               "facts are grey with their n; hover any cell for n and its interval.")
    if "es_definition" in results and (results["es_definition"] == TOKEN_ACCURACY).any():
        st.caption(":warning: Some facts have no true answer (imported zsRE-style data): their ES/PS is token accuracy "
                   "of the new answer, not the paper's P(new) > P(true).")
    if is_sweep(results):
        sweep_section(results, Path(name).stem)
    main = main_table(results)
    stem = Path(name).stem
    if main.empty:
        st.warning("Every edit in this file failed, so there is nothing to average; the reasons are in *All rows* "
                   "(column `error`).")
    tabs = st.tabs(["Tables 3–4 (method × target)", "Source × target", "Table 5: ablation", "Table 6: multi-hop",
                    "Time and coverage", "All rows"])
    if not main.empty:
        with tabs[0]:
            _main_comparison(main, stem, cell_statistics(results))
        with tabs[1]:
            _source_target(main, stem)
    with tabs[2]:
        _ablation(results, stem)
    with tabs[3]:
        _multihop(results, stem)
    with tabs[4]:
        table(readable_results(coverage(results)), f"{stem} time and coverage")
    with tabs[5]:
        # Shown in words; downloaded as written, so that the CSV can be uploaded here again.
        table(results, f"{stem} rows", styled=display_table(readable_results(results)))


def _side_by_side(ours: pd.DataFrame, theirs: pd.DataFrame, what: str, name: str, fmt: str = ".1f",
                  stats: dict[str, pd.DataFrame] | None = None) -> None:
    """Our grid, the paper's, and the difference, each with its CSV. ``stats`` (grids ``n``,
    ``low``, ``high`` shaped like ``ours``) adds facts and intervals to hover and greys thin cells."""
    stats = stats or {}
    st.plotly_chart(score_heatmap(ours, f"Ours: {what}", fmt=fmt, min_n=MIN_FACTS, **stats))
    table(ours.round(2), f"{name} ours", index=True)
    if "n" in stats:
        table(stats["n"].reindex(index=ours.index, columns=ours.columns), f"{name} facts per cell (n)", index=True)
    shared = theirs.reindex(index=[i for i in ours.index if i in theirs.index])
    if shared.empty:
        st.caption("The paper has no numbers for these rows.")
        return
    left, right = st.columns(2)
    with left:
        st.plotly_chart(score_heatmap(theirs, f"Paper: {what}", fmt=fmt))
        table(theirs, f"{name} paper", index=True)
    with right:
        diff = difference_grid(ours, theirs).dropna(how="all").dropna(axis=1, how="all")
        beyond = None
        if "low" in stats:
            paper_cells = theirs.reindex(index=diff.index, columns=diff.columns)
            low, high = (stats[k].reindex(index=diff.index, columns=diff.columns) for k in ("low", "high"))
            beyond = (paper_cells < low) | (paper_cells > high)
        st.plotly_chart(difference_heatmap(diff, f"Ours − paper: {what}", beyond=beyond))
        table(diff.round(2), f"{name} difference", index=True)


def _main_comparison(main: pd.DataFrame, stem: str, stats: pd.DataFrame) -> None:
    sources = list(dict.fromkeys(main["source_lang"]))
    c1, c2 = st.columns(2)
    source = c1.radio("Edits made in", sources, horizontal=True, format_func=language_label, key="bench_source")
    metric = c2.radio("Metric", ["ES", "PS", "NS"], horizontal=True, key="bench_metric")
    ours = main_results_grid(main, source, metric)
    theirs = main_results_grid(paper("main_results"), source, metric)
    grids = {k: main_results_grid(stats.assign(value=stats[k]), source, metric) for k in ("n", "low", "high")}
    covered = stats[(stats["source_lang"] == source) & (stats["target_lang"] == "avg")]["targets"]
    if not covered.empty:
        # An average over fewer targets than the paper's is another quantity: relabelled, never differenced.
        label = avg_label(source, int(covered.min()))
        ours, *renamed = (g.rename(columns={f"{source}-avg": label}) for g in (ours, *grids.values()))
        grids = dict(zip(grids, renamed))
        if label != f"{source}-avg":
            st.caption(f"**{label}**: this run averages {int(covered.min())} target languages, the paper "
                       f"{label.split(' of ')[1].rstrip(')')}; that column is not compared with the paper's average.")
    _side_by_side(ours, theirs, f"{metric}, edits in {source}, method × target language", f"{stem} {source} {metric}",
                  stats=grids)
    table(main_table_wide(main, source), f"{stem} table {source} (all metrics, as printed)")


def _source_target(main: pd.DataFrame, stem: str) -> None:
    c1, c2 = st.columns(2)
    method = c1.selectbox("Method", list(dict.fromkeys(main["method"])), key="bench_st_method")
    metric = c2.radio("Metric", ["ES", "PS", "NS"], horizontal=True, key="bench_st_metric")
    ours = source_target_grid(main, method, metric)
    theirs = source_target_grid(paper("main_results"), method, metric)
    if len(ours) == 1:
        st.caption("This run edited in one source language; add more source languages to fill the rows.")
    _side_by_side(ours, theirs, f"{method} {metric}, source × target language", f"{stem} {method} {metric} source-target")


def _ablation(results: pd.DataFrame, stem: str) -> None:
    wide = ablation_table_wide(ablation_table(results))
    if wide.empty:
        st.info("Run MEMLA together with at least one ablation (first tab) to fill Table 5.")
        return
    _side_by_side(wide.set_index("variant"), ablation_grid(paper("ablation")), "Table 5 (ablation)", f"{stem} table 5")


def _multihop(results: pd.DataFrame, stem: str) -> None:
    wide = multihop_table_wide(multihop_table(results))
    if wide.empty:
        st.info("None of this run's facts has multi-hop questions; Table 6 needs them (the bundled set has 28).")
        return
    st.caption(":warning: QS here scores the multi-hop questions of *your* facts (for the bundled set, questions "
               "written for this workbench), not MKEB's: a gap to the paper's QS says as much about the questions "
               "as about the method.")
    _side_by_side(wide.set_index("method"), multihop_grid(paper("multihop")), "QS, Table 6 (multi-hop)",
                  f"{stem} table 6", fmt=".2f")


# --------------------------------------------------------------------------- the paper's tables


def paper_panel() -> None:
    st.info("The numbers **published in the MEMLA paper** (Xie et al., 2024; backbone mGPT 1.3B), from its "
            "Tables 1 and 3–6 — not computed here.", icon=":material/info:")
    st.caption("ES/PS: % of prompts where the new answer beats the old one. NS/QS: token F1 of neighborhood / "
               "multi-hop answers. *xx-avg*: mean over the 11 target languages other than the source.")
    main, ablation, multihop, lengths = st.tabs(
        ["Tables 3–4: main results", "Table 5: ablation", "Table 6: multi-hop", "Table 1: prompt lengths"]
    )
    with main:
        c1, c2 = st.columns(2)
        source = c1.radio("Edits made in", ["en", "zh"], horizontal=True, key="paper_source",
                          format_func={"en": "English (Table 3)", "zh": "Chinese (Table 4)"}.get)
        metric = c2.radio("Metric", ["ES", "PS", "NS"], horizontal=True, key="paper_metric")
        grid = main_results_grid(paper("main_results"), source, metric)
        st.plotly_chart(score_heatmap(grid, f"{metric}, edits made in {source}: method × target language"))
        table(grid, f"paper table {3 if source == 'en' else 4} {metric}", index=True)
    with ablation:
        grid = ablation_grid(paper("ablation"))
        st.plotly_chart(grouped_bars(grid.T, "Ablation with Chinese as the edit language"))
        st.caption("w/o LSM / LIM: the language-specific / -independent editor is not masked to its neurons; "
                   "w/o LSE / LIE: that editor is left out.")
        table(grid, "paper table 5 ablation", index=True)
    with multihop:
        grid = multihop_grid(paper("multihop"))
        st.plotly_chart(score_heatmap(grid, "QS (multi-hop question score): method × setting", fmt=".2f"))
        table(grid, "paper table 6 multi-hop", index=True)
    with lengths:
        grid = prompt_length_grid(paper("prompt_lengths"))
        st.caption("Average prompt length in MKEB (the paper does not say whether in words, characters or tokens).")
        table(grid, "paper table 1 prompt lengths", index=True)
