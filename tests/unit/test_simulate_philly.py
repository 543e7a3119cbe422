"""The Philly/Gavel converter: which rows become jobs, how times and centres come out, strict about its input,
and end to end from the shipped sample to the three modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.simulate import main
from gateway.errors import ConfigError
from gateway.simulate import load_sites, load_trace
from gateway.simulate.philly import DEFAULT_ACCELERATOR, convert, read_jobs
from gateway.simulate.trace import MAX_TRACE_BYTES

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "traces" / "philly-sample.csv"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.csv"
    path.write_text(text)
    return path


def test_the_catalogue_has_the_default_class() -> None:
    assert f"id: {DEFAULT_ACCELERATOR}\n" in (ROOT / "policies" / "accelerators.yaml").read_text()


def test_seconds_are_kept_and_each_vc_is_a_centre_and_a_tenant(tmp_path: Path) -> None:
    path = write(
        tmp_path, "job_id,submit_time,duration,num_gpus,vc\nj1,100,50,2,vc1\nj2,120,10,4,vc2\nj3,130,5,1,vc1\n"
    )
    out = convert(read_jobs(path))
    assert [(j.job_id, j.submit_s, j.duration_s, j.cards, j.home_site, j.tenant) for j in out.jobs] == [
        ("j1", 100, 50, 2, "vc1", "vc1"),
        ("j2", 120, 10, 4, "vc2", "vc2"),
        ("j3", 130, 5, 1, "vc1", "vc1"),
    ]
    assert all(j.accelerator == "" and j.line == i + 2 for i, j in enumerate(out.jobs))
    assert not out.timestamps and out.zero_gpu == 0


def test_timestamps_become_seconds_from_the_earliest_submit(tmp_path: Path) -> None:
    text = (
        "JobID,Submitted_Time,Run_Time,GPUs,Virtual_Cluster\n"
        "a,2017-10-03 08:00:10,60,1,vc1\n"
        "b,2017-10-03T08:00:00,60,1,vc1\n"
        "c,2017-10-04 08:00:00,60,1,vc2\n"
    )
    out = convert(read_jobs(write(tmp_path, text)), time_compression=2)
    assert out.timestamps
    assert [j.submit_s for j in out.jobs] == [5, 0, 86400 / 2]
    assert [j.duration_s for j in out.jobs] == [60, 60, 60]  # durations are kept


@pytest.mark.parametrize(
    "header",
    [
        "job_id,submit_time,duration,num_gpus,vc",
        "jobid,submitted_time,duration_s,gpus,virtual_cluster",
        "ID,Arrival_Time,RunTime,GPU_Num,Cluster",
        "id,submit_s,run_time,cards,VC",
        "user,vc,id,status,cards,submit_s,duration",  # any order, other columns ignored
    ],
)
def test_the_usual_header_spellings_are_understood(tmp_path: Path, header: str) -> None:
    values = {"id": "j1", "submit": "10", "duration": "20", "gpus": "2", "vc": "vc1"}
    roles = {
        "id": "id",
        "jobid": "id",
        "job_id": "id",
        "submit_time": "submit",
        "submitted_time": "submit",
        "arrival_time": "submit",
        "submit_s": "submit",
        "duration": "duration",
        "duration_s": "duration",
        "run_time": "duration",
        "runtime": "duration",
        "num_gpus": "gpus",
        "gpus": "gpus",
        "gpu_num": "gpus",
        "cards": "gpus",
        "vc": "vc",
        "virtual_cluster": "vc",
        "cluster": "vc",
    }
    row = ",".join(values.get(roles.get(h.lower(), ""), "x") for h in header.split(","))
    (job,) = convert(read_jobs(write(tmp_path, f"{header}\n{row}\n"))).jobs
    assert (job.job_id, job.submit_s, job.duration_s, job.cards, job.home_site) == ("j1", 10, 20, 2, "vc1")


def test_rows_without_gpus_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "id,submit_s,duration,gpus,vc\nj1,0,5,0,vc1\nj2,1,5,1,vc1\nj3,2,5,0,vc2\n")
    out = convert(read_jobs(path))
    assert [j.job_id for j in out.jobs] == ["j2"] and out.zero_gpu == 2
    assert [s.name for s in out.sites] == ["vc1"]  # a VC with no GPU job has nothing to simulate


def test_each_centre_holds_its_peak_demand_in_whole_nodes_or_the_given_cards(tmp_path: Path) -> None:
    # vc1: 6 + 4 overlap (10 at once, 16 after rounding); j3 starts as j1 ends, so it never adds to the peak.
    text = "id,submit_s,duration,gpus,vc\nj1,0,10,6,vc1\nj2,5,10,4,vc1\nj3,10,5,6,vc1\nj4,0,0,9,vc2\n"
    sites = {s.name: s for s in convert(read_jobs(write(tmp_path, text))).sites}
    assert sites["vc1"].cards(DEFAULT_ACCELERATOR) == 16
    assert sites["vc2"].cards(DEFAULT_ACCELERATOR) == 16  # a zero-length job still needs its 9 cards to exist
    assert {s.region for s in sites.values()} == {"philly"}
    given = convert(read_jobs(write(tmp_path, text)), cards_per_vc=4, accelerator="nvidia-h100").sites
    assert [(p.accelerator_class, p.cards, p.cards_per_node) for s in given for p in s.pools] == [
        ("nvidia-h100", 4, 4),
        ("nvidia-h100", 4, 4),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "1: empty file"),
        ("id,submit_s,duration,vc\n", r"1: no column for a GPU count \(num_gpus or gpus or gpu_num or cards\)"),
        ("id,jobid,submit_s,duration,gpus,vc\n", "1: columns 'id' and 'jobid' both name the job id"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,1,vc1\nj2,0,5,1\n", "3: 4 fields; the header has 5"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,1,vc1\nj1,0,5,1,vc1\n", "3: job id 'j1' already used on line 2"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,1,vc1\n,0,5,1,vc1\n", "3: the job id is empty"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,1,vc1\nj2,0,5,1,\n", "3: the virtual cluster is empty"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,1,VC_1\n", "2: virtual cluster 'VC_1' cannot name a centre"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,1.5,vc1\n", "2: GPU count '1.5' is not a whole number"),
        ("id,submit_s,duration,gpus,vc\nj1,0,5,-1,vc1\n", "2: GPU count '-1' is not a whole number"),
        ("id,submit_s,duration,gpus,vc\nj1,0,None,1,vc1\n", "2: duration 'None' is not a number of seconds"),
        ("id,submit_s,duration,gpus,vc\nj1,0,-5,1,vc1\n", "2: duration '-5' must be a finite number"),
        ("id,submit_s,duration,gpus,vc\nj1,-1,5,1,vc1\n", "2: submit time '-1' must be a finite number"),
        ("id,submit_s,duration,gpus,vc\nj1,yesterday,5,1,vc1\n", "2: submit time 'yesterday' is neither seconds"),
        (
            "id,submit_s,duration,gpus,vc\nj1,0,5,1,vc1\nj2,2017-10-03 08:00:00,5,1,vc1\n",
            "3: submit time is a timestamp without a time zone but line 2's is seconds",
        ),
        (
            "id,submit_s,duration,gpus,vc\nj1,2017-10-03 08:00:00Z,5,1,vc1\nj2,2017-10-03 08:00:00,5,1,vc1\n",
            "3: submit time is a timestamp without a time zone but line 2's is a timestamp with a time zone",
        ),
        ('id,submit_s,duration,gpus,vc\nj1,0,5,1,"vc1\n', "2: not valid CSV"),
    ],
)
def test_a_malformed_input_is_reported_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"^{path}:{message}"):
        read_jobs(path)


def test_an_input_without_a_gpu_job_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "id,submit_s,duration,gpus,vc\nj1,0,5,0,vc1\n")
    with pytest.raises(ConfigError, match="no job asks for a GPU"):
        convert(read_jobs(path), source=str(path))


def test_a_huge_input_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.truncate(300 << 20)  # sparse: reading it would take 300 MB of memory
    assert path.stat().st_size > MAX_TRACE_BYTES
    with pytest.raises(ConfigError, match=f"^{path}: 314572800 bytes is over the {MAX_TRACE_BYTES} byte limit"):
        read_jobs(path)


def test_the_sample_converts_and_the_simulator_prints_the_three_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, sites = tmp_path / "t.csv", tmp_path / "s.yaml"
    argv = ["convert-philly", "--jobs", str(SAMPLE), "--out-trace", str(trace), "--out-sites", str(sites)]
    assert main([*argv, "--cards-per-vc", "16"]) == 0
    said = capsys.readouterr().out
    assert "28 jobs" in said and "skipped: 2 with zero GPUs" in said and "3 virtual clusters" in said
    assert [s.name for s in load_sites(sites)] == ["6214e9", "b436b2", "ee9e8c"]  # '6214e9' stays a string
    assert {j.tenant for j in load_trace(trace)} == {"6214e9", "b436b2", "ee9e8c"}
    assert main(["--trace", str(trace), "--sites", str(sites)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["siloed", "federated", "pooled"]
    assert main(["--trace", str(trace), "--sites", str(sites), "-o", "json"]) == 0
    modes = json.loads(capsys.readouterr().out)["modes"]
    assert modes["siloed"]["mean_wait_s"] > modes["federated"]["mean_wait_s"]  # 16 cards each: VCs queue alone


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cards-per-vc", "0"], "--cards-per-vc must be at least 1"),
        (["--time-compression", "0.5"], "--time-compression must be at least 1"),
        (["--accelerator", "nvidia v100"], "--accelerator 'nvidia v100' is not a class name"),
    ],
)
def test_the_command_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["convert-philly", "--jobs", str(SAMPLE), "--out-trace", str(tmp_path / "t"), "--out-sites", str(tmp_path)]
    assert main([*argv, *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_command_names_a_bad_row_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "id,submit_s,duration,gpus,vc\nj1,0,5,x,vc1\n")
    argv = ["convert-philly", "--jobs", str(path), "--out-trace", str(tmp_path / "t"), "--out-sites", str(tmp_path)]
    assert main(argv) == 2
    assert f"{path}:2: GPU count 'x' is not a whole number" in capsys.readouterr().err
