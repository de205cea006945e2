"""docs/check_pages.py finds broken links, missing anchors and missing images
(its file pass, on a small hand-made site; the browser pass needs Chromium
and a built site, and runs in CI after the documentation build)."""
import importlib.util
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                      "check_pages.py")


@pytest.fixture(scope="module")
def check_pages():
    if not os.path.isfile(SCRIPT):  # an installed copy without the repository
        pytest.skip("no docs/check_pages.py next to the tests")
    spec = importlib.util.spec_from_file_location("check_pages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _site(root, index_body):
    (root / "sub").mkdir()
    (root / "img.png").write_bytes(b"\x89PNG not really")
    (root / "sub" / "page.html").write_text('<html><body><h1 id="top">t</h1>'
                                            '<a href="../index.html#intro">back</a></body></html>')
    (root / "index.html").write_text(f'<html><body><p id="intro">x</p>{index_body}</body></html>')


def test_a_sound_site_passes(tmp_path, check_pages):
    _site(tmp_path, '<a href="sub/page.html#top">p</a><img src="img.png">'
                    '<a href="https://example.org/x">ext</a><a href="#intro">self</a>')
    problems, n_pages = check_pages.check_files(str(tmp_path))
    assert problems == [] and n_pages == 2


def test_broken_links_anchors_and_images_are_reported(tmp_path, check_pages):
    _site(tmp_path, '<a href="sub/nothing.html">a</a><a href="sub/page.html#gone">b</a>'
                    '<img src="missing.png"><a href="#nowhere">c</a>')
    problems, _ = check_pages.check_files(str(tmp_path))
    text = "\n".join(problems)
    assert "broken link sub/nothing.html" in text
    assert "sub/page.html#gone names no anchor" in text
    assert "missing image missing.png" in text
    assert "#nowhere names no anchor" in text
    assert len(problems) == 4


def test_no_site_is_an_error(tmp_path, check_pages, capsys):
    assert check_pages.main([str(tmp_path)]) == 1
    assert "no built site" in capsys.readouterr().err
