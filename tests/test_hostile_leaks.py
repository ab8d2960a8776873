"""Class 6 of issue #29: one masking function (envkit.masking.mask_text, through ``masked`` for variables) for
every URL or variable envkit prints or stores: no credential of a URL (user info with or without a scheme,
a query or fragment parameter named like one) and no secret-named variable's value ever shows."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from envkit.cli import main
from envkit.masking import mask_text, masked

S = "S3cr3tCanary"


@pytest.mark.parametrize("text", [
    f"https://user:{S}@host/simple", f"user:{S}@host/simple", f"//user:{S}@host/simple", f"https://h/x?api_key={S}",
    f"https://h/x?token={S}&page=2", f"https://h/x#access_token={S}", f"https://h/x?jwt={S}", f"https://h/x?a=1;sig={S}",
    f"mirror at https://u:{S}@m/x, then", f"https://u:{S}@mirror/x",
])
def test_every_credential_spelling_of_the_issue_is_masked(text):
    assert S not in mask_text(text) and "<set>" in mask_text(text)


@pytest.mark.parametrize("name", ["VLLM_PWD", "VLLM_BEARER", "VLLM_API_KEY", "MY_JWT", "VLLM_SESSION_ID"])
def test_secret_names_are_masked_whatever_their_value(name):
    assert masked(name, S) == "<set>"


@pytest.mark.parametrize("text", ["https://pypi.org/simple", "git@github.com:org/repo", "me@example.com",
                                  "expandable_segments:True", "/home/me/.cache/huggingface", "a=b"])
def test_what_holds_no_credential_is_left_as_it_is(text):
    assert mask_text(text) == text and masked("PWD", text) == text


def test_hf_home_with_credentials_is_masked_in_the_hosts_cache_dir_too():
    from envkit.facts import Facts
    from envkit.probe.host import probe_host

    host = probe_host({"HF_HOME": f"https://u:{S}@mirror/x"})
    assert S not in host.cache_dir and host.cache_dir == "https://<set>@mirror/x"
    facts = json.loads(open("tests/fixtures/facts/h100-vllm0.26-trl1.16.json").read())
    facts["host"]["cache_dir"] = f"https://u:{S}@mirror/x"  # a hand-edited facts file is masked on loading
    assert S not in Facts.from_dict(facts).host.cache_dir


def test_matrix_refresh_never_prints_or_stores_the_index_credentials(tmp_path, monkeypatch):
    from envkit.knowledge import refresh

    monkeypatch.setattr(refresh, "release_files", lambda index, package: {})
    out = tmp_path / "matrix.json"
    url = f"https://user:{S}@mirror.example/simple?token={S}"
    result = CliRunner().invoke(main, ["matrix", "refresh", "--index-url", url, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert S not in result.output and S not in out.read_text()
    assert json.loads(out.read_text())["source"] == "https://<set>@mirror.example/simple?token=<set>"


def test_matrix_refresh_errors_never_show_the_index_credentials(tmp_path, monkeypatch):
    from envkit.knowledge import refresh

    monkeypatch.setattr(refresh.time, "sleep", lambda seconds: None)
    url = f"http://user:{S}@127.0.0.1:9/simple?api_key={S}"  # port 9 (discard): refused at once
    result = CliRunner().invoke(main, ["matrix", "refresh", "--index-url", url, "--package", "trl",
                                       "--output", str(tmp_path / "m.json")])
    assert result.exit_code != 0 and "cannot reach" in result.output and S not in result.output


SECRET = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=8, max_size=30)


@given(secret=SECRET, form=st.sampled_from([
    "https://u:{s}@h/x", "{user}:{s}@h/x", "//u:{s}@h", "https://h/?{param}={s}", "https://h/p#{param}={s}&x=1",
    "see https://u:{s}@h/x now", "https://h/x?a=b&{param}={s}"]),
    param=st.sampled_from(["token", "api_key", "access_token", "jwt", "password", "sig", "X-Auth", "bearer"]),
    user=st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True))
def test_no_credential_survives_masking(secret, form, param, user):
    text = form.format(s=secret, param=param, user=user)
    assert secret not in mask_text(text)
