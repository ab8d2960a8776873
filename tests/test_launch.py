"""Server mode and multi-GPU launch: the plan as data (golden files), the recipe checks, the EK5xx
checks, and the process handling against dummy processes (no GPU, no vLLM).

ENVKIT_REGEN_GOLDEN=1 python -m pytest tests/test_launch.py rewrites tests/fixtures/launch/*.json.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from envkit.exitcodes import raise_terminated
from envkit.launch.layout import LaunchError, LaunchLayout, ProcessSpec, launch_layout
from envkit.launch.machine import port_in_use, probe_launch
from envkit.launch.procs import LaunchFailed, Running, run_processes, wait_healthy
from envkit.recipe.derived import vllm_launch_kwargs
from envkit.recipe.load import RecipeError, load_recipe, parse_recipe
from envkit.launch.checks import LAUNCH_CHECKS, LaunchInputs, LaunchProbe
from envkit.rules import Severity
from envkit.train.decisions import vllm_utilization
from tests.conftest import make_facts

GOLDEN = Path(__file__).parent / "fixtures" / "launch"
REGENERATE = os.environ.get("ENVKIT_REGEN_GOLDEN") == "1"
TRL = "1.16.0"

# case -> (recipe, visible GPUs, installed trl, the launcher's CUDA_VISIBLE_DEVICES, --machine-rank)
CASES = {
    "colocate-1gpu": ("colocate-1gpu", 1, TRL, None, 0),
    "colocate-1gpu-of-2": ("colocate-1gpu", 2, TRL, None, 0),  # TRL refuses a process that sees 2 GPUs
    "colocate-1gpu-of-cvd": ("colocate-1gpu", 2, TRL, "2,3", 0),
    "server-1+1": ("server-1+1", 2, TRL, None, 0),
    "server-1+1-trl1.10": ("server-1+1", 2, "1.10.0", None, 0),
    "colocate-2gpu": ("colocate-2gpu", 2, TRL, None, 0),
    "server-1+3-zero3": ("server-1+3-zero3", 4, TRL, None, 0),
    "server-2+6": ("server-2+6", 8, TRL, None, 0),
    "server-4+4-tp2": ("server-4+4-tp2", 8, TRL, None, 0),
    "colocate-8gpu-tp2": ("colocate-8gpu-tp2", 8, TRL, None, 0),
    "multinode-rank0": ("multinode", 8, TRL, None, 0),
    "multinode-rank1": ("multinode", 8, TRL, None, 1),
}


def resolved_layout(recipe, recipe_path: str, visible: int, trl: str | None, **extra) -> LaunchLayout:
    """launch_layout with vLLM's share resolved as envkit train resolves it (no memory budget here)."""
    return launch_layout(recipe, recipe_path, visible, trl, vllm_utilization=vllm_utilization(recipe, None), **extra)


def layout_for(recipe_name: str, visible: int, trl: str | None = TRL, cvd: str | None = None, machine_rank: int = 0,
             **extra) -> LaunchLayout:
    recipe = load_recipe(GOLDEN / f"{recipe_name}.yaml")
    recipe.distributed.machine_rank = machine_rank  # as envkit train --machine-rank
    return resolved_layout(recipe, f"tests/fixtures/launch/{recipe_name}.yaml", visible, trl, cuda_visible_devices=cvd,
                             forward=["--output", "runs/golden"], python="python", **extra)


@pytest.mark.parametrize("case", sorted(CASES))
def test_launch_layout_matches_golden(case):
    recipe_name, visible, trl, cvd, rank = CASES[case]
    got = {"inputs": {"recipe": recipe_name, "visible_gpus": visible, "trl": trl, "cuda_visible_devices": cvd,
                      "machine_rank": rank},
           "plan": layout_for(recipe_name, visible, trl, cvd, rank).to_dict()}
    golden = GOLDEN / f"{case}.json"
    if REGENERATE:
        golden.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(golden.read_text()), f"{case}: layout changed (ENVKIT_REGEN_GOLDEN=1 rewrites the goldens)"


def test_server_mode_plan_essentials():
    """The goldens' key facts, stated once: separate GPUs, TRL's server settings, the trainer's overrides."""
    plan = layout_for("server-1+1", 2)
    server, trainer = plan.processes
    assert (server.gpus, trainer.gpus) == (["0"], ["1"])
    assert server.env["VLLM_SERVER_DEV_MODE"] == "1" and server.health_url == "http://127.0.0.1:8000/health"
    assert server.argv[server.argv.index("--weight-transfer-config") + 1] == '{"backend": "nccl"}'
    assert trainer.argv[1:] == ["-m", "envkit", "train", "tests/fixtures/launch/server-1+1.yaml", "--worker", "--output", "runs/golden"]
    assert vllm_launch_kwargs(load_recipe(GOLDEN / "server-1+1.yaml")) == {"vllm_mode": "server", "vllm_server_host": "127.0.0.1", "vllm_server_port": 8000,
                                   "vllm_group_port": 51216, "vllm_server_timeout": 600.0}
    old = layout_for("server-1+1", 2, "1.10.0").processes[0]
    assert old.argv[1:3] == ["-m", "trl.scripts.vllm_serve"] and old.health_url.endswith("/health/")


@pytest.mark.parametrize("trl", [None, "0.17.0", "not-a-version"])
def test_server_mode_without_a_known_trl_server_is_refused(trl):
    with pytest.raises(LaunchError, match="no known vLLM server command"):
        layout_for("server-1+1", 2, trl)


def test_prerelease_trl_gets_the_newer_server():
    assert layout_for("server-1+1", 2, "1.17.0.dev0").server == "vllm serve"


def test_gpu_indices_count_within_the_launchers_cuda_visible_devices():
    plan = layout_for("server-1+1", 2, cvd="GPU-aaaa,5")
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plan.processes] == ["GPU-aaaa", "5"]
    with pytest.raises(LaunchError, match=r"training_gpus: GPU 1 is not among the 1 visible \(CUDA_VISIBLE_DEVICES=4\)"):
        layout_for("server-1+1", 2, cvd="4")


def test_server_mode_needs_a_gpu_left_for_training():
    with pytest.raises(LaunchError, match="no GPU left for training"):
        layout_for("server-1+3-zero3", 1)


def test_one_named_training_gpu_stays_in_process():
    recipe = parse_recipe(_fixture("colocate-1gpu") + "resources: {training_gpus: [3]}\n", str(GOLDEN / "x.yaml"))
    plan = resolved_layout(recipe, "x.yaml", 4, TRL)
    assert plan.in_process and plan.processes == [] and plan.env == {"CUDA_VISIBLE_DEVICES": "3"}


def test_the_server_listens_beyond_loopback_only_when_trainers_use_another_address():
    text = _fixture("server-1+1").replace("  mode: server\n", "  mode: server\n  server: {host: 10.0.0.1}\n")
    server = resolved_layout(parse_recipe(text, str(GOLDEN / "x.yaml")), "x.yaml", 2, TRL).processes[0]
    assert server.argv[server.argv.index("--host") + 1] == "0.0.0.0" and server.health_url == "http://10.0.0.1:8000/health"


def test_trust_remote_code_needs_a_server_that_offers_it():
    text = _fixture("server-1+1").replace("  dtype: bf16\n", "  dtype: bf16\n  trust_remote_code: true\n")
    recipe = parse_recipe(text, str(GOLDEN / "x.yaml"))
    assert "--trust-remote-code" in resolved_layout(recipe, "x.yaml", 2, TRL).processes[0].argv
    with pytest.raises(LaunchError, match="model.trust_remote_code"):
        resolved_layout(recipe, "x.yaml", 2, "1.10.0")


def test_accelerate_accepts_every_backends_flags():
    """The knowledge's flags are real `accelerate launch` flags: parsed by the installed accelerate."""
    launch = pytest.importorskip("accelerate.commands.launch")
    parser = launch.launch_command_parser()
    for case in ("colocate-2gpu", "server-1+3-zero3", "server-4+4-tp2", "colocate-8gpu-tp2", "multinode-rank1"):
        argv = layout_for(*CASES[case]).processes[-1].argv
        args = parser.parse_args(argv[3:])
        assert args.module and args.training_script == "envkit" and args.training_script_args[:1] == ["train"], case
        assert args.num_processes == int(argv[argv.index("--num_processes") + 1])


def _fixture(name: str) -> str:
    return (GOLDEN / f"{name}.yaml").read_text()


@pytest.mark.parametrize("extra, message", [
    ("vllm: {mode: server}\n", "resources.generation_gpus: vllm.mode: server needs the GPUs of the vLLM server"),
    ("vllm: {mode: server}\nresources: {generation_gpus: [0, 1], training_gpus: [1, 2]}\n",
     "resources.training_gpus: GPU 1 is also a generation GPU"),
    ("vllm: {mode: server, tensor_parallel_size: 2}\nresources: {generation_gpus: 1}\n",
     "tensor_parallel_size x data_parallel_size = 2, but resources.generation_gpus has 1"),
    ("vllm: {mode: server, enabled: false}\nresources: {generation_gpus: 1}\n", "vllm.mode: server mode needs vLLM"),
    ("resources: {generation_gpus: [0]}\n", "only vllm.mode: server uses generation GPUs"),
    ("vllm: {tensor_parallel_size: 2}\nresources: {training_gpus: 3}\n", "vllm.tensor_parallel_size: 2 must divide the 3"),
    ("vllm: {data_parallel_size: 2}\n", "vllm.data_parallel_size: applies to the vLLM server only"),
    ("distributed: {backend: deepspeed-zero3}\n", "resources.training_gpus: distributed settings start trainer ranks"),
    ("resources: {training_gpus: [1, 1]}\n", "needs distinct GPU indices"),
    ("resources: {training_gpus: 0}\n", "a count must be at least 1"),
    ("resources: {training_gpus: two}\n", "expected a list or an integer or null, got str 'two'"),
    ("vllm: {server: {port: 51216}}\n", "vllm.server.group_port: must differ from vllm.server.port"),
    ("distributed: {num_machines: 2}\n", "distributed.main_process_ip: num_machines > 1 needs"),
    ("distributed: {num_machines: 2, machine_rank: 2, main_process_ip: 10.0.0.1}\n", "needs 0 <= machine_rank < num_machines"),
    ("distributed: {accelerate_config: nope.yaml}\n", "distributed.accelerate_config: no such file"),
    ("distributed: {backend: fsdp, accelerate_config: colocate-1gpu.yaml}\n", "replaces backend: fsdp"),
])
def test_recipe_launch_fields_are_checked(extra, message):
    with pytest.raises(RecipeError) as error:
        parse_recipe(_fixture("colocate-1gpu") + extra, str(GOLDEN / "x.yaml"))
    lines = str(error.value).split("\n")  # one line per problem (a wrong layout can have several)
    assert any(message in line for line in lines) and all(line.startswith(str(GOLDEN / "x.yaml:")) for line in lines)


def test_an_accelerate_config_replaces_the_backend_flags(tmp_path):
    config = tmp_path / "accelerate.yaml"
    config.write_text("distributed_type: MULTI_GPU\n")
    text = _fixture("colocate-1gpu").replace("../../../recipes", str(GOLDEN.parents[2] / "recipes"))
    recipe = parse_recipe(text + "resources: {training_gpus: 2}\ndistributed: {accelerate_config: accelerate.yaml}\n",
                          str(tmp_path / "r.yaml"))
    argv = resolved_layout(recipe, "r.yaml", 2, TRL).processes[0].argv
    assert argv[3:5] == ["--config_file", str(config)] and "--multi_gpu" not in argv and "--mixed_precision" not in argv


# --- EK5xx ---------------------------------------------------------------------------------------------------------

def check(rule_id, recipe_name, visible, facts, busy=(), context=None, use_vllm=True):
    plan = layout_for(recipe_name, visible)
    inputs = LaunchInputs(load_recipe(GOLDEN / f"{recipe_name}.yaml"), plan, use_vllm, LaunchProbe(busy, context))
    return LAUNCH_CHECKS[rule_id].finding(facts, inputs)


def test_every_launch_rule_is_documented_and_explained():
    assert sorted(LAUNCH_CHECKS) == ["EK501", "EK502", "EK503", "EK504", "EK505", "EK506", "EK507", "EK701"]
    for rule_id, rule in LAUNCH_CHECKS.items():
        assert len(rule.doc.splitlines()) >= 2 and LAUNCH_CHECKS.find(rule_id) is rule and LAUNCH_CHECKS.find(rule.name) is rule


def test_gpu_count_against_the_recipe():
    assert check("EK501", "server-2+6", 8, make_facts(["h100"] * 8)).severity is Severity.OK
    short = check("EK501", "server-2+6", 8, make_facts(["h100"] * 4))
    assert short.severity is Severity.FAIL and "needs GPU index 7, 4 GPU(s) visible" in short.title
    assert check("EK501", "colocate-1gpu", 1, make_facts("h100")).severity is Severity.SKIP
    # no GPU at all: the ranks train on CPU over gloo (a smoke run, the Slurm tests), said, not refused
    cpu = check("EK501", "colocate-2gpu", 2, make_facts(None))
    assert cpu.severity is Severity.WARN and "the 2 trainer rank(s) run on CPU (gloo)" in cpu.title
    assert check("EK501", "server-1+1", 2, make_facts(None)).severity is Severity.FAIL  # a server needs its GPU


def test_cuda_visible_devices_consistency():
    eight = ["h100"] * 8
    assert check("EK502", "server-1+1", 2, make_facts(eight)).severity is Severity.OK
    assert check("EK502", "server-1+1", 2, make_facts(eight, cuda_visible_devices="2,3")).severity is Severity.OK
    twice = check("EK502", "server-1+1", 2, make_facts(eight, cuda_visible_devices="2,2"))
    assert twice.severity is Severity.FAIL and "GPU 2 twice" in twice.title
    beyond = check("EK502", "server-1+1", 2, make_facts(eight, cuda_visible_devices="1,9"))
    assert beyond.severity is Severity.FAIL and "entry 9" in beyond.title
    assert check("EK502", "server-1+1", 2, make_facts(eight, cuda_visible_devices="")).severity is Severity.FAIL


def test_busy_ports_fail_with_their_recipe_field():
    facts = make_facts(["h100"] * 8)
    assert check("EK503", "server-4+4-tp2", 8, facts).severity is Severity.OK
    busy = check("EK503", "server-4+4-tp2", 8, facts, busy=(8100,))
    assert busy.severity is Severity.FAIL and "8100 (vllm.server.port)" in busy.title
    assert check("EK503", "colocate-1gpu", 1, facts).severity is Severity.SKIP


def test_port_in_use_sees_a_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def test_nccl_environment():
    many = ["h100"] * 8
    assert check("EK504", "colocate-1gpu", 1, make_facts("h100")).severity is Severity.SKIP
    assert check("EK504", "server-1+1", 2, make_facts(many)).severity is Severity.OK
    p2p = check("EK504", "server-1+1", 2, make_facts(many, env={"NCCL_P2P_DISABLE": "1"}))
    assert p2p.severity is Severity.WARN and "NCCL_P2P_DISABLE=1" in p2p.evidence
    loopback = check("EK504", "multinode", 8, make_facts(many, env={"NCCL_SOCKET_IFNAME": "lo"}))
    assert loopback.severity is Severity.FAIL
    assert check("EK504", "multinode", 8, make_facts(many, env={"NCCL_SOCKET_IFNAME": "^lo,docker0"})).severity is Severity.OK
    tcp = check("EK504", "multinode", 8, make_facts(many, env={"NCCL_IB_DISABLE": "1"}))
    assert tcp.severity is Severity.WARN


def test_max_model_length_against_the_model():
    facts = make_facts("h100")  # the fixtures ask for 256 + 512 = 768 tokens
    assert check("EK505", "colocate-1gpu", 1, facts, context=4096).severity is Severity.OK
    short = check("EK505", "colocate-1gpu", 1, facts, context=512)
    assert short.severity is Severity.FAIL and "768 exceeds the model's 512 positions" in short.title
    assert check("EK505", "colocate-1gpu", 1, facts, use_vllm=False).severity is Severity.SKIP


def test_the_launch_probe_reads_ports_and_the_local_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"max_position_embeddings": 512}')
    recipe = parse_recipe(_fixture("colocate-1gpu").replace("Qwen/Qwen3-0.6B", str(model)), str(GOLDEN / "x.yaml"))
    inputs = LaunchInputs(recipe, resolved_layout(recipe, "x.yaml", 1, TRL), True, probe_launch(recipe))
    findings = {f.id: f for f in LAUNCH_CHECKS.run(make_facts("h100"), inputs)}
    assert findings["EK505"].severity is Severity.FAIL


@pytest.mark.train  # the server command is the installed trl's
def test_dry_run_prints_the_launch_layout(tmp_path):
    from click.testing import CliRunner

    from envkit.cli import main

    # --force: this machine lacks the recipe's GPUs (EK501), which would make the dry run exit 1
    result = CliRunner().invoke(main, ["train", str(GOLDEN / "server-1+1.yaml"), "--dry-run", "--force", "--output", str(tmp_path / "o")])
    launch = json.loads(result.stdout)["launch"]
    assert result.exit_code == 0 and [p["name"] for p in launch["processes"]] == ["vllm", "train"]
    assert launch["processes"][1]["argv"][-4:] == ["--worker", "--output", str(tmp_path / "o"), "--force"]


@pytest.mark.train  # the server command is the installed trl's
def test_dry_run_plans_for_a_target_gpu_instead_of_this_machine(tmp_path):
    """--target: the catalog's GPUs replace the probed ones (an image built for a GPU, checked where there is none)."""
    from click.testing import CliRunner

    from envkit.cli import main

    argv = ["train", str(GOLDEN / "server-1+1.yaml"), "--dry-run", "--force", "--output", str(tmp_path / "o")]
    here = CliRunner().invoke(main, argv)
    there = CliRunner().invoke(main, [*argv, "--target", "h100", "--target-count", "2"])
    # the recipe's two GPUs: missing here, there on two H100s
    assert "EK501" in here.stderr and "EK501" not in there.stderr
    assert json.loads(there.stdout)["plan"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "h100"], "--target plans only (with --dry-run)"),
    (["--dry-run", "--target", "h1000"], "--target: unknown GPU 'h1000'; did you mean h100?"),
])
def test_train_target_misuse_is_one_line(args, message, tmp_path):
    from click.testing import CliRunner

    from envkit.cli import main

    result = CliRunner().invoke(main, ["train", str(GOLDEN / "server-1+1.yaml"), *args,
                                       "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "o").exists()


# --- processes -----------------------------------------------------------------------------------------------------

PY = sys.executable
SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
delay, port = float(sys.argv[1]), int(sys.argv[2])
print("loading weights", flush=True)
time.sleep(delay)
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("serving", flush=True)
HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie may wait for a PID 1 that does not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def spec(name: str, code: str, *args, health: str | None = None, timeout: float | None = None) -> ProcessSpec:
    return ProcessSpec(name, [PY, "-c", code, *map(str, args)], {}, [], health_url=health, health_timeout_s=timeout)


def wait_for_line(proc: Running, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((line for line in proc.tail if text in line), None)
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not printed; got {list(proc.tail)}")


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period():
    proc = Running(spec("stubborn", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                    "print('ready', flush=True); time.sleep(60)"), echo=lambda line: None)
    wait_for_line(proc, "ready")
    started = time.monotonic()
    proc.stop(grace_s=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 4 and proc.popen.returncode == -signal.SIGKILL and not alive(proc.popen.pid)


TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print("grandchild", child.pid, flush=True)
time.sleep(float(sys.argv[1]))
"""


def test_a_process_tree_leaves_no_orphan_even_in_another_session():
    """torchrun starts each rank in its own session: stopping the launcher's group alone would orphan it."""
    proc = Running(spec("tree", TREE, 60), echo=lambda line: None)
    grandchild = int(wait_for_line(proc, "grandchild").split()[1])
    proc.stop(grace_s=0.3)
    assert not alive(proc.popen.pid) and not alive(grandchild)


def test_run_plan_streams_prefixed_output_and_tears_down_the_server():
    port, lines = free_port(), []
    server = spec("vllm", SERVER, 0.3, port, health=f"http://127.0.0.1:{port}/health", timeout=10)
    trainer = spec("train", "import sys; print('step 1'); sys.stdout.write('10%\\r20%\\n'); print('oops', file=sys.stderr); sys.exit(3)")
    code = run_processes(LaunchLayout(False, "test", processes=[server, trainer]), echo=lines.append, grace_s=2, poll_s=0.05)
    assert code == 3
    assert "[vllm] loading weights" in lines and "[train] oops" in lines
    assert lines[lines.index("[train] step 1"):][:3] == ["[train] step 1", "[train] 10%", "[train] 20%"]  # \r ends a line
    assert lines.index(f"[envkit] vllm is up: http://127.0.0.1:{port}/health") < lines.index("[train] step 1")
    assert not port_in_use(port)


def test_run_plan_kills_what_a_finished_trainer_left_behind():
    lines = []
    code = run_processes(LaunchLayout(False, "test", processes=[spec("train", TREE, 0.5)]), echo=lines.append, grace_s=0.3, poll_s=0.05)
    grandchild = int(next(line for line in lines if "grandchild" in line).split()[-1])
    assert code == 0 and not alive(grandchild)


def test_ctrl_c_asks_the_trainer_to_save_then_stops_everything():
    lines = []
    trainer = spec("train", "import signal, sys, time\n"
                            "def save(*a):\n    print('saving checkpoint', flush=True); sys.exit(130)\n"
                            "signal.signal(signal.SIGINT, save)\nprint('training', flush=True)\ntime.sleep(60)")
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = run_processes(LaunchLayout(False, "test", processes=[trainer]), echo=lines.append, grace_s=1, poll_s=0.05)
    finally:
        timer.cancel()
    assert code == 130 and "[train] saving checkpoint" in lines


def test_sigterm_to_envkit_stops_the_server_and_the_trainer():
    """A SIGTERM (docker stop, a scheduler) reaches only envkit: its processes lead their own sessions.
    The `envkit` command turns SIGTERM into Terminated (envkit.cli.run), as here."""
    lines = []
    started = [spec(name, "import os, time; print(os.getpid(), flush=True); time.sleep(60)") for name in ("vllm", "train")]
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = run_processes(LaunchLayout(False, "test", processes=started), echo=lines.append, grace_s=1, poll_s=0.05)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    pids = [int(line.split()[-1]) for line in lines if line.split()[-1].isdigit()]
    assert code == 143
    assert "[envkit] terminated: stopping every process of the run (the trainer saves a checkpoint)" in lines
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)


def test_health_wait_for_a_server_that_comes_up_late():
    port = free_port()
    proc = Running(spec("vllm", SERVER, 1.0, port), echo=lambda line: None)
    try:
        started = time.monotonic()
        wait_healthy(f"http://127.0.0.1:{port}/health", 10, proc, poll_s=0.1)
        assert 0.9 <= time.monotonic() - started < 5
    finally:
        proc.stop(grace_s=1)


def test_health_wait_for_a_server_that_never_answers_names_its_last_lines():
    port = free_port()
    proc = Running(spec("vllm", SERVER, 60, port), echo=lambda line: None)
    try:
        with pytest.raises(LaunchFailed) as error:
            wait_healthy(f"http://127.0.0.1:{port}/health", 0.6, proc, poll_s=0.1)
    finally:
        proc.stop(grace_s=1)
    message = str(error.value)
    assert f"did not answer http://127.0.0.1:{port}/health within 0.6 s" in message and "loading weights" in message


def test_health_wait_for_a_server_that_dies_names_its_exit_code():
    proc = Running(spec("vllm", "import sys; print('CUDA out of memory', flush=True); sys.exit(7)"), echo=lambda line: None)
    with pytest.raises(LaunchFailed, match=r"vllm exited with code 7 before .*\n    CUDA out of memory"):
        wait_healthy(f"http://127.0.0.1:{free_port()}/health", 10, proc, poll_s=0.05)
    proc.stop(grace_s=0.5)
