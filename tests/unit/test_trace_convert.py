"""The Alibaba openb converter: which pods become jobs, how, and where they live; strict about its input."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.simulate import main
from gateway.errors import ConfigError
from gateway.simulate import load_sites, load_trace, write_sites, write_trace
from gateway.simulate.alibaba import convert, read_nodes, read_pods

POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
)
PODS = POD_HEADER + (
    "p-whole,1000,1024,2,1000,,LS,Running,10,110,20\n"
    "p-frac,1000,1024,1,460,,LS,Running,0,50,0\n"
    "p-cpu,1000,1024,0,0,,LS,Running,0,50,0\n"
    "p-pending,1000,1024,1,1000,,LS,Pending,5,30,\n"
    "p-v100,1000,1024,4,1000,V100M32,LS,Running,30,90,40\n"
    "p-either,1000,1024,1,1000,V100M16|T4,LS,Failed,30,31,30\n"
)
NODES = "sn,cpu_milli,memory_mib,gpu,model\nn1,1,1,8,V100M32\nn2,1,1,2,T4\nn3,1,1,4,V100M16\nn4,1,1,0,\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    pods, nodes = tmp_path / "pods.csv", tmp_path / "nodes.csv"
    pods.write_text(PODS)
    nodes.write_text(NODES)
    return pods, nodes


def test_pods_that_ran_on_a_gpu_become_jobs(files: tuple[Path, Path]) -> None:
    out = convert(read_pods(files[0]), read_nodes(files[1]), centres=2, seed=1)
    jobs = {j.job_id: j for j in out.jobs}
    assert list(jobs) == ["p-whole", "p-frac", "p-v100", "p-either"]
    assert out.skipped == {"no GPU": 1, "never ran": 1}
    assert out.fractional == 1
    assert (jobs["p-whole"].submit_s, jobs["p-whole"].duration_s, jobs["p-whole"].cards) == (10, 90, 2)
    assert jobs["p-frac"].cards == 1  # 460 milli-GPU counts as a whole card
    assert jobs["p-v100"].accelerator == "alibaba-v100m32"
    assert jobs["p-either"].accelerator == ""  # two models allowed: any class


def test_nodes_are_dealt_into_centres_and_homes_can_run_their_pods(files: tuple[Path, Path]) -> None:
    out = convert(read_pods(files[0]), read_nodes(files[1]), centres=2, seed=1)
    assert [s.name for s in out.sites] == ["centre-1", "centre-2"]
    assert sum(p.cards for s in out.sites for p in s.pools) == 14  # the card-less node is left out
    by_name = {s.name: s for s in out.sites}
    v100 = next(j for j in out.jobs if j.job_id == "p-v100")
    assert by_name[v100.home_site].cards("alibaba-v100m32") >= 4


def test_the_same_seed_gives_the_same_federation(files: tuple[Path, Path]) -> None:
    pods, nodes = read_pods(files[0]), read_nodes(files[1])
    assert convert(pods, nodes, 3, 7) == convert(pods, nodes, 3, 7)


def test_what_it_writes_reads_back(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = convert(read_pods(files[0]), read_nodes(files[1]), centres=2, seed=1)
    write_trace(out.jobs, tmp_path / "t.csv")
    write_sites(tmp_path / "s.yaml", out.sites)
    assert [(j.job_id, j.cards, j.home_site) for j in load_trace(tmp_path / "t.csv")] == [
        (j.job_id, j.cards, j.home_site) for j in out.jobs
    ]
    assert load_sites(tmp_path / "s.yaml") == out.sites


def test_a_pod_list_without_times_is_refused(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,1000\n")
    with pytest.raises(ConfigError, match=r"pods.csv:1: missing column\(s\) gpu_spec, creation_time"):
        read_pods(pods)


def test_a_bad_number_names_its_line(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text(POD_HEADER + "p1,1,1,1,1000,,LS,Running,0,5,0\np2,1,1,x,1000,,LS,Running,0,5,0\n")
    with pytest.raises(ConfigError, match=r"pods.csv:3: num_gpu 'x' is not a whole number"):
        read_pods(pods)


def test_the_command_converts_and_the_simulator_runs_the_result(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, sites = tmp_path / "t.csv", tmp_path / "s.yaml"
    argv = ["convert-alibaba", "--pods", str(files[0]), "--nodes", str(files[1]), "--centres", "2"]
    assert main([*argv, "--seed", "1", "--out-trace", str(trace), "--out-sites", str(sites)]) == 0
    assert "4 jobs" in capsys.readouterr().out
    assert main(["--trace", str(trace), "--sites", str(sites), "--mode", "federated", "-o", "json"]) == 0
    assert '"federated"' in capsys.readouterr().out


def test_time_compression_makes_arrivals_denser_and_keeps_durations(files: tuple[Path, Path]) -> None:
    pods, nodes = read_pods(files[0]), read_nodes(files[1])
    plain = {j.job_id: j for j in convert(pods, nodes, 2, 1).jobs}
    dense = {j.job_id: j for j in convert(pods, nodes, 2, 1, time_compression=10).jobs}
    assert dense["p-whole"].submit_s == plain["p-whole"].submit_s / 10 == 1
    assert dense["p-whole"].duration_s == plain["p-whole"].duration_s


def test_node_share_keeps_that_share_of_the_nodes(files: tuple[Path, Path]) -> None:
    pods, nodes = read_pods(files[0]), read_nodes(files[1])  # three nodes with cards: 8 + 2 + 4
    kept = convert(pods, nodes, 1, 1, node_share=2 / 3)
    assert sum(p.cards for s in kept.sites for p in s.pools) in {10, 12, 6}  # two of the three nodes
    one = convert(pods, nodes, 1, 1, node_share=0.01)  # never less than one node
    assert len([p for s in one.sites for p in s.pools]) == 1


def test_homes_by_size_sends_work_only_to_centres_that_can_run_it(files: tuple[Path, Path]) -> None:
    out = convert(read_pods(files[0]), read_nodes(files[1]), 3, 1, homes_by="size")
    by_name = {s.name: s for s in out.sites}
    v100 = next(j for j in out.jobs if j.job_id == "p-v100")
    assert by_name[v100.home_site].cards("alibaba-v100m32") >= 4


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--node-share", "0", "--node-share must be above 0 and at most 1"),
        ("--node-share", "1.5", "--node-share must be above 0 and at most 1"),
        ("--time-compression", "0.5", "--time-compression must be at least 1"),
    ],
)
def test_the_command_refuses_a_bad_load_setting(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    argv = ["convert-alibaba", "--pods", str(files[0]), "--nodes", str(files[1]), flag, value]
    argv += ["--out-trace", str(tmp_path / "t.csv"), "--out-sites", str(tmp_path / "s.yaml")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_command_applies_the_load_settings(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, sites = tmp_path / "t.csv", tmp_path / "s.yaml"
    argv = ["convert-alibaba", "--pods", str(files[0]), "--nodes", str(files[1]), "--time-compression", "10"]
    assert main([*argv, "--out-trace", str(trace), "--out-sites", str(sites)]) == 0
    assert {j.job_id: j.submit_s for j in load_trace(trace)}["p-v100"] == 3


MORE_PODS = POD_HEADER + "".join(f"m{i},1,1,{1 + i % 4},1000,,LS,Running,{i},{i + 100},{i}\n" for i in range(40))


def test_without_the_new_settings_the_trace_is_the_six_columns_it_was(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = convert(read_pods(files[0]), read_nodes(files[1]), centres=2, seed=1)
    assert all((j.tenant, j.project, j.max_sites) == ("", "", 1) for j in out.jobs)
    write_trace(out.jobs, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "job_id,submit_s,duration_s,cards,accelerator,home_site"


def test_tenants_and_gangs_are_drawn_with_the_seed_and_leave_homes_alone(tmp_path: Path) -> None:
    pods_file = tmp_path / "pods.csv"
    pods_file.write_text(MORE_PODS)
    nodes_file = tmp_path / "nodes.csv"
    nodes_file.write_text(NODES)
    pods, nodes = read_pods(pods_file), read_nodes(nodes_file)
    plain = convert(pods, nodes, 2, 5)
    first = convert(pods, nodes, 2, 5, tenants=("a", "b", "c"), gang_share=0.5)
    assert first == convert(pods, nodes, 2, 5, tenants=("a", "b", "c"), gang_share=0.5)
    assert [j.home_site for j in first.jobs] == [j.home_site for j in plain.jobs]
    assert {j.tenant for j in first.jobs} == {"a", "b", "c"}
    assert all(j.project == f"{j.tenant}-default" for j in first.jobs)
    multi = [j for j in first.jobs if j.cards > 1]
    assert sum(j.max_sites == 2 for j in multi) == round(0.5 * len(multi)) == 15
    assert all(j.max_sites == 1 for j in first.jobs if j.cards == 1)
    other = convert(pods, nodes, 2, 6, tenants=("a", "b", "c"), gang_share=0.5)
    assert [j.tenant for j in other.jobs] != [j.tenant for j in first.jobs]
    with_projects = convert(pods, nodes, 2, 5, tenants=("a", "b"), projects=("p", "q"))
    assert {j.project for j in with_projects.jobs} == {"p", "q"}
    assert all(j.max_sites == 1 for j in with_projects.jobs)


def test_the_command_writes_tenants_and_gangs_that_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods, nodes, trace, sites = (tmp_path / n for n in ("pods.csv", "nodes.csv", "t.csv", "s.yaml"))
    pods.write_text(MORE_PODS)
    nodes.write_text(NODES)
    argv = ["convert-alibaba", "--pods", str(pods), "--nodes", str(nodes), "--tenants", "a, b", "--gang-share", "1"]
    assert main([*argv, "--out-trace", str(trace), "--out-sites", str(sites)]) == 0
    assert "2 tenants; 30 gangs over up to 2 centres" in capsys.readouterr().out
    jobs = load_trace(trace)
    assert {j.tenant for j in jobs} == {"a", "b"} and {j.project for j in jobs} == {"a-default", "b-default"}
    assert sum(j.max_sites == 2 for j in jobs) == 30
    assert main(["--trace", str(trace), "--sites", str(sites), "-o", "json"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gang-share", "1.5"], "--gang-share must be at least 0 and at most 1"),
        (["--projects", "p"], "--projects needs --tenants"),
    ],
)
def test_the_command_refuses_bad_tenant_and_gang_settings(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["convert-alibaba", "--pods", str(files[0]), "--nodes", str(files[1]), *flags]
    assert main([*argv, "--out-trace", str(tmp_path / "t.csv"), "--out-sites", str(tmp_path / "s.yaml")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"), [("a,A", "tenant 'A' is not a valid name"), ("a,b,a", "tenant 'a' is listed twice")]
)
def test_bad_tenant_names_are_a_usage_error(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    argv = ["convert-alibaba", "--pods", str(files[0]), "--nodes", str(files[1]), "--tenants", value]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out-trace", str(tmp_path / "t.csv"), "--out-sites", str(tmp_path / "s.yaml")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
