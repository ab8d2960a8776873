"""`envkit matrix`: the shipped matrix, the solver over a recorded matrix, refresh against a local index."""

import io
import json
import threading
import zipfile
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from envkit.cli import main
from envkit.knowledge import load
from envkit.knowledge.matrix import Matrix
from envkit.knowledge.refresh import RefreshError, diff, refresh
from envkit.knowledge.solve import Constraints, NoSolution, solve
from tests.conftest import FIXTURES

RECORDED = Matrix(json.loads((FIXTURES / "matrix-2026-11-23.json").read_text()))


def test_shipped_matrix_is_generated_and_covers_the_windows():
    doc = load("matrix")
    assert "envkit matrix refresh" in doc["about"] and doc["generated"] and doc["source"]
    vllm = [Version(v) for v in doc["packages"]["vllm"]]
    trl = [Version(v) for v in doc["packages"]["trl"]]
    assert min(vllm) == Version("0.10.2") and max(vllm) >= Version("0.33.0")
    assert min(trl) == Version("0.18.0") and max(trl) >= Version("1.16.0")
    assert doc["packages"]["vllm"]["0.26.0"]["requires"]["torch"] == "==2.11.0"
    assert doc["packages"]["trl"]["1.16.0"]["vllm_extra"] == "<=0.31.0,>=0.22.0"
    assert doc["packages"]["torch"]["2.11.0"]["cuda"] == "13.0"


def test_trl_116_with_torch_211_gives_vllm_022_to_026():
    found = solve(Constraints(trl="1.16.0", torch="2.11.0"), RECORDED)
    assert Version("0.22.0") <= Version(found.versions["vllm"]) <= Version("0.26.0")
    assert found.versions["torch"] == "2.11.0" and found.cuda == "13.0"
    assert {"transformers", "peft", "bitsandbytes"} <= set(found.versions)
    # the chosen transformers sits inside vllm's window (vllm 0.26.0: >=5.5.3)
    assert RECORDED.requirement("vllm", found.versions["vllm"], "transformers").contains(found.versions["transformers"])


def test_trl_116_with_torch_213_gives_vllm_027_to_031():
    found = solve(Constraints(trl="1.16.0", torch="2.13.0"), RECORDED)
    assert Version("0.27.0") <= Version(found.versions["vllm"]) <= Version("0.31.0")


def test_vllm_033_with_trl_116_has_no_solution_naming_the_window():
    with pytest.raises(NoSolution) as err:
        solve(Constraints(vllm="0.33.0", trl="1.16.0"), RECORDED)
    assert err.value.reasons == ["vllm 0.33.0 is outside trl 1.16.0's window <=0.31.0,>=0.22.0"]


def test_target_gpu_constraints():
    with pytest.raises(NoSolution, match="below vLLM's minimum"):
        solve(Constraints(target="p100"), RECORDED)
    # vllm 0.10.2 pins torch 2.8.0: fine for vLLM on B200 (vllm#23724); only Unsloth refuses it (EK403)
    assert solve(Constraints(target="b200", trl="0.24.0"), RECORDED).versions["torch"] == "2.8.0"
    gb10 = solve(Constraints(target="gb10"), RECORDED)
    assert any("runs bf16 on gb10" in note for note in gb10.notes)
    assert solve(Constraints(target="gb10", vllm="<0.22.0"), RECORDED).versions["vllm"] == "0.21.0"
    old = solve(Constraints(target="gb10", vllm="<0.22.0"), RECORDED).notes
    assert any("FP8 checkpoints trap before vllm 0.22.0" in note for note in old)
    with pytest.raises(NoSolution, match="predates vLLM's gb10 support"):
        solve(Constraints(target="gb10", vllm="0.12.0", trl="0.29.1"), RECORDED)


def test_v100_gets_a_vllm_before_0_20():
    """vLLM 0.20.0's CUDA 13 wheels start at sm_75 (EK104): a V100 stack stays below it."""
    assert Version(solve(Constraints(target="v100"), RECORDED).versions["vllm"]) < Version("0.20.0")
    assert Version(solve(Constraints(target="t4"), RECORDED).versions["vllm"]) >= Version("0.20.0")
    with pytest.raises(NoSolution, match="vllm 0.20.0 needs compute capability 7.5"):
        solve(Constraints(target="v100", vllm="0.20.0"), RECORDED)


def test_open_ended_trl_window_is_flagged():
    found = solve(Constraints(torch="2.14.0"), RECORDED)
    assert any("no upper bound" in note for note in found.notes)


def test_solve_cli(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["matrix", "solve", "--trl", "1.16.0", "--torch", "2.11.0"])
    assert ok.exit_code == 0 and "vllm==0.26.0" in ok.output and "trl==1.16.0" in ok.output
    none = runner.invoke(main, ["matrix", "solve", "--trl", "1.16.0", "--vllm", "0.33.0", "--json"])
    assert none.exit_code == 1 and json.loads(none.output)["solution"] is None
    assert runner.invoke(main, ["matrix", "solve", "--target", "h1000"]).exit_code == 2


def test_show_cli():
    runner = CliRunner()
    one = runner.invoke(main, ["matrix", "show", "vllm", "0.26.0"])
    assert one.exit_code == 0 and "torch==2.11.0" in one.output
    assert runner.invoke(main, ["matrix", "show", "nosuch"]).exit_code == 2
    assert runner.invoke(main, ["matrix", "show", "vllm", "9.9.9"]).exit_code == 2


def test_show_without_a_package_lists_the_choices():
    result = CliRunner().invoke(main, ["matrix", "show"])
    table = Matrix.shipped()
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == sorted(table.doc["packages"])
    vllm = next(line for line in result.stdout.splitlines() if line.startswith("vllm "))
    assert vllm.split()[1:] == [str(len(table.releases("vllm"))), "releases,", "newest", str(table.releases("vllm")[0][0])]
    assert "envkit matrix show PACKAGE [VERSION]" in result.stderr


def test_diff_lines():
    old = {"packages": {"trl": {"1.15.0": {"a": 1}, "1.16.0": {"a": 1}}}}
    new = {"packages": {"trl": {"1.16.0": {"a": 2}, "1.17.0": {"a": 1}}}}
    assert diff(old, new) == ["+ trl 1.17.0", "- trl 1.15.0", "~ trl 1.16.0"]


# --- refresh against an index served on loopback -------------------------------------------------


def _wheel(name: str, version: str, requires: list[str], padding: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(f"{name}/big.bin", b"\0" * padding)  # pushes the dist-info past the first range
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.10\n"
        wheel.writestr(f"{name}-{version}.dist-info/METADATA", meta + "".join(f"Requires-Dist: {r}\n" for r in requires))
    return buffer.getvalue()


class _Index(BaseHTTPRequestHandler):
    """A PEP 691 index with no PEP 658 files, serving wheels with Range support."""

    files: dict[str, bytes] = {}

    def do_GET(self):
        host = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/simple/vllm/":
            listing = [{"filename": n, "url": f"{host}/files/{n}", "size": len(b), "yanked": False,
                        "upload-time": "2026-11-01T00:00:00Z", "hashes": {}} for n, b in self.files.items()]
            return self._send(200, json.dumps({"name": "vllm", "files": listing}).encode())
        data = self.files.get(self.path.rsplit("/", 1)[-1])
        if data is None:
            return self._send(404, b"")
        start, _, end = self.headers.get("Range", "bytes=0-").removeprefix("bytes=").partition("-")
        start, end = int(start), int(end) if end else len(data) - 1
        return self._send(206, data[start : end + 1])

    def _send(self, code: int, body: bytes):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_index():
    _Index.files = {
        "vllm-0.26.0-cp38-abi3-manylinux_2_28_x86_64.whl": _wheel("vllm", "0.26.0", ["torch==2.11.0", "transformers>=5.5.3", "numpy"], 10),
        "vllm-0.27.0-cp38-abi3-manylinux_2_28_x86_64.whl": _wheel("vllm", "0.27.0", ["torch==2.13.0"], 2_000_000),
        "vllm-0.9.0-cp38-abi3-manylinux_2_28_x86_64.whl": _wheel("vllm", "0.9.0", ["torch==2.6.0"], 10),  # below the floor
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simple"
    server.shutdown()


def test_refresh_reads_metadata_from_wheel_tails(local_index):
    doc = refresh(["vllm"], local_index)
    assert sorted(doc["packages"]["vllm"]) == ["0.26.0", "0.27.0"]
    assert doc["packages"]["vllm"]["0.26.0"]["requires"] == {"torch": "==2.11.0", "transformers": ">=5.5.3"}
    assert doc["packages"]["vllm"]["0.27.0"]["requires"] == {"torch": "==2.13.0"}


def test_refresh_cli_writes_and_diffs(local_index, tmp_path):
    out = tmp_path / "matrix.json"
    out.write_text(json.dumps({"packages": {"vllm": {"0.26.0": {}}}}))
    result = CliRunner().invoke(main, ["matrix", "refresh", "--index-url", local_index, "--package", "vllm", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "+ vllm 0.27.0" in result.output and "~ vllm 0.26.0" in result.output
    assert json.loads(out.read_text())["packages"]["vllm"]["0.27.0"]["requires"]["torch"] == "==2.13.0"


def test_refresh_without_network_fails_clearly_and_keeps_the_file(tmp_path):
    out = tmp_path / "matrix.json"
    out.write_text("{}")
    result = CliRunner().invoke(main, ["matrix", "refresh", "--index-url", "http://127.0.0.1:9/simple", "--package", "trl", "--output", str(out)])
    assert result.exit_code == 1
    assert "cannot reach" in result.output and "--index-url" in result.output and "Traceback" not in result.output
    assert out.read_text() == "{}"
    with pytest.raises(RefreshError):
        refresh(["trl"], "http://127.0.0.1:9/simple")


def _registry_reachable() -> bool:
    try:
        refresh.__globals__["_get"]("https://pypi.org/simple/peft/", tries=1, Accept="application/vnd.pypi.simple.v1+json")
        return True
    except RefreshError:
        return False


@pytest.mark.network
def test_real_refresh_of_a_few_packages():
    if not _registry_reachable():
        pytest.skip("the package registry (pypi.org) is not reachable from here")
    doc = refresh(["peft", "trl"])
    assert "0.21.0" in doc["packages"]["peft"] and "torch" in doc["packages"]["peft"]["0.21.0"]["requires"]
    assert doc["packages"]["trl"]["1.16.0"]["vllm_extra"] == "<=0.31.0,>=0.22.0"


@pytest.mark.parametrize("args,needle", [
    (["--torch", ">>2"], "--torch '>>2': not a version"),
    (["--torch", "2.x"], "--torch '2.x'"),
    (["--python", "abc"], "--python 'abc'"),
])
def test_solve_rejects_bad_constraints_in_one_line(args, needle):
    result = CliRunner().invoke(main, ["matrix", "solve", *args])
    assert result.exit_code == 2 and needle in result.output
    assert len(result.output.strip().splitlines()) == 1


def with_unsloth(matrix: Matrix) -> Matrix:
    """The recorded matrix plus unsloth / unsloth_zoo 2026.10.9 and datasets from the shipped one (the
    2026-11-23 recording predates their refresh); their records are the index's metadata (cf.
    tests/fixtures/metadata/unsloth-2026.10.9.METADATA)."""
    shipped = load("matrix")["packages"]
    packages = dict(matrix.doc["packages"])
    packages |= {name: {"2026.10.9": shipped[name]["2026.10.9"]} for name in ("unsloth", "unsloth_zoo")}
    packages["datasets"] = shipped["datasets"]
    return Matrix({"packages": packages})


def test_unsloth_backend_stays_inside_every_cap_unsloth_declares():
    """unsloth / unsloth_zoo 2026.10.9 cap trl at 1.15.0, transformers at 5.17.0, torch below 2.15 and datasets
    below 5: the plain solution (trl 1.16.0) is not theirs."""
    matrix = with_unsloth(RECORDED)
    plain = solve(Constraints(target="h200", torch="2.11.0"), matrix).versions
    found = solve(Constraints(target="h200", torch="2.11.0", backend="unsloth"), matrix).versions
    assert plain["trl"] == "1.16.0" and "unsloth" not in plain
    assert (found["unsloth"], found["unsloth_zoo"], found["trl"], found["vllm"]) == ("2026.10.9", "2026.10.9", "1.15.0", "0.26.0")
    for package in ("unsloth", "unsloth_zoo"):
        for dependency in ("trl", "transformers", "torch", "datasets"):
            assert matrix.requirement(package, found[package], dependency).contains(found[dependency]), (package, dependency)
    assert Version(found["vllm"]) in SpecifierSet(matrix.record("trl", found["trl"])["vllm_extra"])
    assert matrix.requirement("trl", found["trl"], "datasets").contains(found["datasets"])
    assert Version(found["datasets"]) < Version("5")


def test_unsloth_backend_says_which_cap_leaves_no_solution():
    with pytest.raises(NoSolution) as caught:
        solve(Constraints(trl="1.16.0", backend="unsloth"), with_unsloth(RECORDED))
    assert caught.value.reasons == ["unsloth 2026.10.9 + unsloth_zoo 2026.10.9 caps trl at !=0.19.0,<=1.15.0,>=0.18.2: "
                                    "no trl release matches 1.16.0"]


def test_unsloth_prefers_the_vllm_it_was_seen_working_with():
    """Unsloth declares no vLLM bound; the verified pair (curated unsloth_vllm_verified, EK306) comes first, and a
    pinned unverified vLLM is still solved, with a note saying so."""
    matrix = with_unsloth(RECORDED)
    newest = solve(Constraints(target="h100"), matrix).versions["vllm"]
    verified = solve(Constraints(target="h100", backend="unsloth"), matrix)
    assert Version(newest) > Version("0.26.0") and verified.versions["vllm"] == "0.26.0" and verified.notes == []
    pinned = solve(Constraints(target="h100", backend="unsloth", vllm=newest), matrix)
    assert pinned.versions["vllm"] == newest
    assert pinned.notes == [f"unsloth 2026.10.9 + vllm {newest}: no evidence fast_inference works (verified: vllm 0.26.0; EK306)"]


def test_refresh_lists_every_release_the_index_has_above_the_floor(monkeypatch):
    """Issue #12: matrix.json said 'generated 2026-11-23' yet lacked transformers 5.24.0 (uploaded 2026-11-21).
    Every final release with a wheel at or above the floor is listed, whatever its upload-time format; below
    the floor, pre-releases, yanked files and sdists are not."""
    files = [("5.24.0", "2026-11-21T12:24:29Z", False), ("5.23.0", "2026-11-13T14:10:36.123456Z", False),
             ("4.52.0", "2025-05-20T00:00:00Z", False), ("4.51.3", "2025-04-14T00:00:00Z", False),
             ("5.25.0rc1", "2026-11-25T00:00:00Z", False), ("5.22.0", "2026-10-29T14:18:15Z", "broken")]
    listing = [{"filename": f"transformers-{v}-py3-none-any.whl", "url": f"https://x/{v}.whl", "size": 1, "yanked": y,
                "upload-time": t} for v, t, y in files] + [{"filename": "transformers-5.24.0.tar.gz", "url": "https://x/s", "size": 1}]
    monkeypatch.setattr("envkit.knowledge.refresh._get", lambda url, **headers: json.dumps({"files": listing}).encode())
    monkeypatch.setattr("envkit.knowledge.refresh.release_record", lambda file: {"requires": {}, "uploaded": file["upload-time"][:10]})
    doc = refresh(["transformers"], "https://index.invalid/simple")
    assert sorted(doc["packages"]["transformers"], key=Version) == ["4.52.0", "5.23.0", "5.24.0"]
    assert doc["refreshed"] == {"transformers": doc["generated"]}


def test_a_partial_refresh_keeps_the_other_packages_dates(local_index, tmp_path):
    out = tmp_path / "matrix.json"
    out.write_text(json.dumps({"generated": "2026-11-16", "packages": {"vllm": {}, "transformers": {"5.23.0": {}}}}))
    result = CliRunner().invoke(main, ["matrix", "refresh", "--index-url", local_index, "--package", "vllm", "--output", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["refreshed"]["transformers"] == "2026-11-16" and doc["generated"] == "2026-11-16"
    assert doc["refreshed"]["vllm"] > "2026-11-16"


def test_the_refresh_runs_daily():
    workflow = (Path(__file__).parents[1] / ".github" / "workflows" / "matrix-refresh.yml").read_text()
    assert 'cron: "17 5 * * *"' in workflow


def test_the_solver_picks_no_pair_its_own_doctor_warns_about():
    """Issue #23: with torch 2.11 the newest transformers inside the windows wants a peft at least 0.22.0.  Before
    peft 0.22.0 was released (the matrix without it) that pair warned (EK603) and the solver stepped down to
    5.23.0 + 0.21.2; with it (the shipped matrix since 2026-12-07) the newest transformers and peft go together."""
    import copy

    from envkit.rules.known import inside_checks

    shipped = Matrix.shipped()
    before = copy.deepcopy(shipped.doc)
    del before["packages"]["peft"]["0.22.0"]
    stepped = solve(Constraints(trl="1.16.0", torch="2.11.0"), Matrix(before))
    assert inside_checks(stepped.versions) == []
    assert stepped.versions["transformers"] == "5.23.0" and stepped.versions["peft"] == "0.21.2"
    # 5.24.0 fits vllm 0.26.0 and trl 1.16.0: the solver did step down
    assert shipped.requirement("vllm", stepped.versions["vllm"], "transformers").contains("5.24.0")
    found = solve(Constraints(trl="1.16.0", torch="2.11.0"), shipped)
    assert inside_checks(found.versions) == []
    assert found.versions["peft"] == "0.22.0" and Version(found.versions["transformers"]) >= Version("5.24.0")