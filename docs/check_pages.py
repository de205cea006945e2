"""Check the built documentation as a reader sees it.

Usage::

    python docs/check_pages.py [docs/_build/html] [--screenshots DIR]

Two passes over the built site:

1. Every HTML page is read and each internal link (``href``) and image
   (``src``) is checked: the file it names must exist (an image must not be
   empty), and a ``#fragment`` must be an ``id`` in the target page.
2. A few pages (the index, a gallery page, an API page, the performance and
   ClusterLDML pages, which draw figures) are opened in headless Chromium
   (Debian's ``chromium`` package).  A script added to a temporary copy of
   each page records, once the page has loaded, the images that did not load
   and the length of the rendered main text; a page fails if an image is
   missing or the text is nearly empty.  A screenshot of each is saved for a
   person to look at.

Exits 1 on any failure, listing them all.  Without Chromium the second pass is
skipped with a message saying so (and how to install it); the first still runs.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

# Pages opened in the browser: (name of the screenshot, page, text that must show).
BROWSER_PAGES = [
    ("index", "index.html", "Fast Mahalanobis metric learning"),
    ("gallery", "auto_examples/plot_cluster_ldml_rounds.html", "ClusterLDML"),
    ("api", "generated/fastmetric.LDML.html", "Logistic Discriminant Metric Learning"),
    ("performance", "performance.html", "Kernels against numpy"),
    ("cluster_ldml", "user_guide/cluster_ldml.html", "Combine"),
]

# Written into a temporary copy of a page: after the load event, the outcome
# is put on <html> as attributes, which --dump-dom prints.
PROBE = """
<script>
window.addEventListener("load", function () {
  var broken = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    if (!(img.complete && img.naturalWidth > 0)) { broken.push(img.getAttribute("src")); }
  }
  var main = document.querySelector("main") || document.body;
  document.documentElement.setAttribute("data-check-broken", JSON.stringify(broken));
  document.documentElement.setAttribute("data-check-text", String(main.innerText.length));
  document.documentElement.setAttribute("data-check-body", main.innerText.slice(0, 4000));
});
</script>
"""


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def _parse(path):
    parser = _Links()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    return parser


def _internal(url):
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith(("mailto:", "javascript:"))


def check_files(root):
    """Internal links and images of every page; returns a list of problems."""
    problems, parsed = [], {}
    pages = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
             if f.endswith(".html")]
    for page in pages:
        parsed[os.path.abspath(page)] = _parse(page)
    for page in sorted(pages):
        info = parsed[os.path.abspath(page)]
        rel = os.path.relpath(page, root)
        for src in info.images:
            if not _internal(src):
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(page), unquote(urlsplit(src).path)))
            if not os.path.isfile(target) or os.path.getsize(target) == 0:
                problems.append(f"{rel}: missing image {src}")
        for href in info.links:
            if not _internal(href):
                continue
            parts = urlsplit(href)
            target = page if not parts.path else os.path.normpath(
                os.path.join(os.path.dirname(page), unquote(parts.path)))
            if os.path.isdir(target):
                target = os.path.join(target, "index.html")
            if not os.path.exists(target):
                problems.append(f"{rel}: broken link {href}")
                continue
            if parts.fragment and target.endswith(".html"):
                ids = parsed.get(os.path.abspath(target))
                if ids is None:
                    ids = parsed[os.path.abspath(target)] = _parse(target)
                if unquote(parts.fragment) not in ids.ids:
                    problems.append(f"{rel}: link {href} names no anchor in its page")
    return problems, len(pages)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(browser, args, timeout=180):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--run-all-compositor-stages-before-draw",
           "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def check_in_browser(root, browser, shots):
    """Render BROWSER_PAGES; returns (problems, screenshot paths)."""
    problems, saved = [], []
    os.makedirs(shots, exist_ok=True)
    for name, rel, expected in BROWSER_PAGES:
        page = os.path.join(root, rel)
        if not os.path.isfile(page):
            problems.append(f"{rel}: page not built")
            continue
        with open(page, encoding="utf-8") as f:
            html = f.read()
        # Load every image now (lazy images below the fold would not load in a
        # headless window), and add the probe before </body>.
        html = re.sub(r'\sloading="lazy"', "", html)
        html = html.replace("</body>", PROBE + "</body>")
        fd, probe_page = tempfile.mkstemp(suffix=".html", prefix=".check_", dir=os.path.dirname(page))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(html)
            url = "file://" + os.path.abspath(probe_page)
            dom = _chromium(browser, ["--dump-dom", url])
            shot = os.path.join(shots, f"{name}.png")
            _chromium(browser, ["--window-size=1400,1800", f"--screenshot={shot}",
                                "file://" + os.path.abspath(page)])
        finally:
            os.remove(probe_page)
        broken = re.search(r'data-check-broken="([^"]*)"', dom.stdout)
        text = re.search(r'data-check-text="(\d+)"', dom.stdout)
        body = re.search(r'data-check-body="([^"]*)"', dom.stdout, flags=re.S)
        if dom.returncode != 0 or broken is None or text is None:
            problems.append(f"{rel}: did not render in Chromium (exit {dom.returncode}): "
                            f"{dom.stderr.strip()[-300:]}")
            continue
        bad = json.loads(broken.group(1).replace("&quot;", '"'))
        if bad:
            problems.append(f"{rel}: images that did not load: {bad}")
        if int(text.group(1)) < 200:
            problems.append(f"{rel}: rendered main text is only {text.group(1)} characters")
        if body is None or expected not in body.group(1):
            problems.append(f"{rel}: the rendered page does not show {expected!r}")
        if not os.path.isfile(shot) or os.path.getsize(shot) == 0:
            problems.append(f"{rel}: no screenshot was taken")
        else:
            saved.append(shot)
    return problems, saved


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=os.path.join(here, "_build", "html"),
                        help="the built site (default: docs/_build/html)")
    parser.add_argument("--screenshots", default=None,
                        help="where to save the screenshots (default: ROOT/../screenshots)")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isfile(os.path.join(root, "index.html")):
        print(f"check_pages: no built site at {root} (run `make -C docs html` first)",
              file=sys.stderr)
        return 1
    shots = args.screenshots or os.path.join(os.path.dirname(root), "screenshots")

    problems, n_pages = check_files(root)
    print(f"check_pages: {n_pages} pages, internal links and images checked")
    browser = find_chromium()
    if browser is None:
        print("check_pages: SKIPPED the browser pass: no Chromium found (on Debian: "
              "apt-get install chromium); links and images were still checked.")
    else:
        more, saved = check_in_browser(root, browser, shots)
        problems += more
        for shot in saved:
            print(f"check_pages: screenshot {shot}")
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"check_pages: {'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'all good'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
