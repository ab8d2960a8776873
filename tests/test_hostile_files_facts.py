"""Hostile facts files (`envkit doctor --facts FILE`): no traceback, no escape sequence, no secret gets out.

A facts file comes from someone else's machine (a bug report) or is edited by hand: whatever it holds, the
doctor answers with a report (exit 0/1) or one line naming the file and the field (exit 2)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from envkit.cli import main
from tests.mutation import mutate

SNAPSHOT = json.loads((Path(__file__).parent / "fixtures" / "facts" / "h100-vllm0.26-trl1.16.json").read_text())
CANARY = "canary-7f3c-SECRET"
SECRETS = {"HF_TOKEN": f"hf_{CANARY}", "VLLM_API_KEY": CANARY, "VLLM_SERVER_URL": f"https://user:{CANARY}@vllm.internal:8000/v1",
           "VLLM_CONFIG_ROOT": f"s3://key:{CANARY}@bucket/x"}


def doctor(path: Path, *args: str):
    return CliRunner().invoke(main, ["doctor", "--facts", str(path), *args])


def one_line_error(result, *needles: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def saved(tmp_path: Path, change) -> Path:
    data = copy.deepcopy(SNAPSHOT)
    change(data)
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(data))
    return path


# --- reading the file -------------------------------------------------------------------------------------

def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps({**SNAPSHOT, "collected_at": "März"}, ensure_ascii=False).encode("latin-1"))
    one_line_error(doctor(path), str(path), "not UTF-8 text")


def test_nested_too_deeply(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"schema": "envkit.facts/1", "host": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_error(doctor(path), str(path), "nested too deeply")


def test_reading_is_bounded():
    one_line_error(doctor(Path("/dev/zero")), "/dev/zero", "not a regular file")


def test_number_past_the_digit_limit(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(SNAPSHOT).replace('"memory_total_mib": 81559', '"memory_total_mib": ' + "9" * 5000))
    one_line_error(doctor(path), str(path), "number too long")


def test_unpaired_surrogate(tmp_path):
    path = tmp_path / "surrogate.json"
    path.write_text(json.dumps(SNAPSHOT).replace('"NVIDIA H100 80GB HBM3"', '"H100 \\ud800"'))
    one_line_error(doctor(path), str(path), "gpus[0].name: not valid Unicode text")


# --- values rules parse are checked at load ----------------------------------------------------------------

@pytest.mark.parametrize("change, needle", [
    (lambda d: d["gpus"][0].__setitem__("compute_capability", "9.x"), "gpus[0].compute_capability: '9.x' is not a compute capability N.N"),
    (lambda d: d["gpus"][0].__setitem__("compute_capability", "9"), "gpus[0].compute_capability: '9' is not"),
    (lambda d: d["driver"].__setitem__("version", "580.xx"), "driver.version: '580.xx' is not a driver version"),
    (lambda d: d["driver"].__setitem__("cuda_version", "thirteen"), "driver.cuda_version: 'thirteen' is not a CUDA version"),
    (lambda d: d["packages"]["torch"].__setitem__("cuda", "cu130"), "packages.torch.cuda: 'cu130' is not a CUDA version"),
    (lambda d: d["packages"]["trl"].__setitem__("requires", ["accelerate", 7]), "packages.trl.requires[1]: expected a string"),
    (lambda d: d["packages"]["vllm"].__setitem__("cudart_needed", "libcudart.so.13"), "packages.vllm.cudart_needed: expected a list"),
    (lambda d: d["installed"].__setitem__("torch", 2.11), "installed.torch: expected a string"),
    (lambda d: d["env"].__setitem__("HF_HOME", ["/x"]), "env.HF_HOME: expected a string"),
    (lambda d: d.__setitem__("target", {"gpu": "h100"}), "target: expected a string or null"),
    (lambda d: d.__setitem__("gpus", [{"name": "H100"}]), "gpus[0].index: missing required key"),
    (lambda d: d["packages"].__setitem__("\x1b[2Jevil\n", {"version": 1}), "packages['\\x1b[2Jevil\\n'].version: expected a string"),
])
def test_bad_values_are_one_line_naming_the_field(tmp_path, change, needle):
    path = saved(tmp_path, change)
    one_line_error(doctor(path), str(path), needle)



@pytest.mark.parametrize("change", [
    lambda d: d.__setitem__("cuda_visible_devices", "0,²"),  # str.isdigit() says yes, int() says no
    lambda d: d.__setitem__("cuda_visible_devices", "9" * 5000),  # past int()'s digit limit
])
def test_values_only_rules_read_never_crash_them(tmp_path, change):
    path = saved(tmp_path, change)
    for args in ([], ["--json"]):
        result = doctor(path, *args)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code in (0, 1), result.output

# --- the terminal: probed or replayed strings cannot steer it -----------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;pwned\x07H100\r  \u2713 all good\n  \u202eevil"
OUR_STYLES = re.compile(r"\x1b\[[0-9;]*m")  # click.style's own colours, kept with color=True


def test_escape_sequences_in_replayed_strings_are_shown_escaped(tmp_path):
    def hostile(d):
        d["gpus"][0]["name"] = HOSTILE
        d["host"]["os"] = "Linux\x1b[31m"
        d["host"]["kernel"] = "6.8\rX"
        d["packages"]["evil\x1b]0;t\x07"] = {"version": "1.0", "requires": ["torch>=99"]}

    path = saved(tmp_path, hostile)
    result = CliRunner().invoke(main, ["doctor", "--facts", str(path), "-v"], color=True)
    assert result.exit_code == 1, result.output  # the evil package's torch>=99 fails EK304
    raw = OUR_STYLES.sub("", result.output)
    assert not [c for c in raw if c != "\n" and (ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e")], repr(raw)
    assert "\\x1b[2J\\x1b]0;pwned\\x07H100\\x0d  \u2713 all good\\x0a  \\u202eevil" in raw  # all of it, visibly
    assert "Linux\\x1b[31m" in raw and "6.8\\x0dX" in raw and "evil\\x1b]0;t\\x07 1.0 needs torch>=99" in raw
    assert not [line for line in raw.splitlines() if line.lstrip().startswith("\u2713 all good")]  # no forged check line


def test_json_output_keeps_the_strings_as_they_are(tmp_path):
    path = saved(tmp_path, lambda d: d["gpus"][0].__setitem__("name", HOSTILE))
    result = doctor(path, "--json")
    assert "\x1b" not in result.output and json.loads(result.output)["facts"]["gpus"][0]["name"] == HOSTILE


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2J", "\\x1b[2J"), ("a\rb", "a\\x0db"), ("bell\x07", "bell\\x07"), ("two\nlines", "two\\x0alines"),
    ("\x9b31m", "\\x9b31m"), ("\u202eevil", "\\u202eevil"), ("line\u2028sep", "line\\u2028sep"),
    ("NVIDIA H100 80GB HBM3 é ✓", "NVIDIA H100 80GB HBM3 é ✓"),
])
def test_printable(raw, shown):
    from envkit.terminal import printable

    assert printable(raw) == shown


# --- credentials inside URLs never get out ----------------------------------------------------------------

def test_probe_masks_credentials_in_any_url_valued_variable():
    from envkit.probe.environ import probe_env

    env = probe_env({"VLLM_SERVER_URL": f"https://user:{CANARY}@vllm.internal:8000/v1?x=1&access_token={CANARY}#top",
                     "VLLM_HOSTS": f"http://{CANARY}@h1,http://a:{CANARY}@h2", "VLLM_LOGGING_LEVEL": "INFO", "HF_HOME": "/data/a@b"})
    assert CANARY not in json.dumps(env)
    assert env["VLLM_SERVER_URL"] == "https://<set>@vllm.internal:8000/v1?x=1&access_token=<set>#top"
    assert env["VLLM_HOSTS"] == "http://<set>@h1,http://<set>@h2"
    assert env["VLLM_LOGGING_LEVEL"] == "INFO" and env["HF_HOME"] == "/data/a@b"  # no URL, nothing masked


def test_this_machine_json_and_dump_carry_no_url_credential(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_SERVER_URL", f"https://user:{CANARY}@vllm.internal/v1")
    dumped = tmp_path / "facts.json"
    result = CliRunner().invoke(main, ["doctor", "--no-gpu", "--json", "--dump-facts", str(dumped)])
    assert result.exit_code in (0, 1) and CANARY not in result.output and CANARY not in dumped.read_text()
    assert json.loads(dumped.read_text())["env"]["VLLM_SERVER_URL"] == "https://<set>@vllm.internal/v1"


def test_replay_masks_url_credentials_whatever_the_name(tmp_path):
    path = saved(tmp_path, lambda d: d["env"].update({**SECRETS, "MY_MIRROR": f"https://{CANARY}@mirror/simple"}))
    dumped = tmp_path / "again.json"
    for args in ([], ["--json"], ["-v"]):
        result = doctor(path, *args, "--dump-facts", str(dumped))
        assert result.exit_code in (0, 1) and CANARY not in result.output and CANARY not in dumped.read_text()
    env = json.loads(dumped.read_text())["env"]
    assert env["MY_MIRROR"] == "https://<set>@mirror/simple" and env["VLLM_SERVER_URL"] == "https://<set>@vllm.internal:8000/v1"
    assert env["HF_TOKEN"] == env["VLLM_API_KEY"] == "<set>"


# --- any mutation of a real facts file ---------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=30)
# Strings close enough to real ones to pass the loader and reach the rules, terminal controls and odd digits mixed in.
PLAUSIBLE = st.one_of(
    st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4}){0,3}((a|b|rc|\.post|\.dev)[0-9]{1,3})?(\+[a-z0-9]{1,6})?\Z"),
    st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}\Z"),
    st.from_regex(r"\A[-0-9²١, ]{0,8}\Z"),  # CUDA_VISIBLE_DEVICES-like
    st.from_regex(r"\Alibcudart\.so\.[0-9]{0,3}(\.[0-9])?\Z"),
    st.sampled_from(["torch", "vllm", "trl", "unsloth", "unsloth_zoo", "xformers", "torchao", "h100", "b200", "gb10", "Linux",
                     "Windows", "", "9" * 30, "GPU-8f1c", "torch>=99; extra == \"vllm\"", "vllm<=0.31.0,>=0.22.0; extra == \"vllm\"",
                     "transformers!=5.*,<1", "x; python_version < \"3.10\"", "y; platform_release >= \"6\"", "z (>=1", "a===b",
                     "\x1b[2J\x1b]0;title\x07", "\r  \u2713 ok\n", "\u202eevil", "expandable_segments:True"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)
JSON = st.recursive(SCALARS | PLAUSIBLE, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | PLAUSIBLE, inner, max_size=4),
                    max_leaves=8)
VALUE = PLAUSIBLE | JSON


@pytest.fixture(scope="module")
def facts_path(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile") / "facts.json"


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), as_json=st.booleans(), ascii_only=st.booleans())
def test_any_mutated_facts_file_is_a_report_or_one_line(facts_path, data, as_json, ascii_only):
    """In process (CliRunner): 1000 runs in about 35 s.  event() counts the exit codes (--hypothesis-show-statistics):
    about half reach a report, the rest are one-line errors."""
    document = copy.deepcopy(SNAPSHOT)
    document["env"].update(SECRETS)
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(document, data.draw, VALUE, st.text(max_size=8) | PLAUSIBLE)
    facts_path.write_text(json.dumps(document, ensure_ascii=ascii_only), encoding="utf-8")
    result = CliRunner().invoke(main, ["doctor", "--facts", str(facts_path), *(["--json"] if as_json else [])])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    event(f"exit {result.exit_code}")
    assert "Traceback" not in result.output and CANARY not in result.output
    if result.exit_code == 2:
        assert len(result.output.strip().splitlines()) == 1, result.output
    elif as_json:
        json.loads(result.output)
    else:  # the report: no character that steers a terminal, but the newlines between its lines
        steering = [c for c in result.output if c != "\n" and (ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2028")]
        assert not steering, result.output
