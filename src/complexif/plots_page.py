"""An offline page for ``dvc plots show`` and ``dvc plots diff``.

DVC's own page loads Vega, Vega-Lite and vega-embed from a CDN, so without network it stays
blank. DVC fills an HTML template of ours instead when ``plots.html_template`` names one: this
writes one with the three libraries inlined (taken from the vl-convert-python package, which
embeds them, so nothing is downloaded) and points the repository's local DVC config
(``.dvc/config.local``, never committed) at it. The page it makes loads no script from anywhere.

``python -m complexif.plots_page`` (``make plots`` runs it); the template is generated, not
committed: it is ~900 kB of third-party JavaScript, rebuilt from the locked package.
"""

from __future__ import annotations

import argparse
import string
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from complexif.io import write_text

# DVC writes Vega-Lite v5 specs; vl-convert bundles any of the versions it embeds.
VEGA_LITE = "5.21"
# Relative to the .dvc folder, as DVC reads plots.html_template from a config file (ignored by
# DVC's own .dvc/.gitignore).
DEFAULT_TEMPLATE = "tmp/plots_page.html"
# What DVC replaces in a template (dvc_render.html). Without {scripts} DVC adds no CDN script.
PLOTS, REFRESH, SCRIPTS = "{plot_divs}", "{refresh_tag}", "{scripts}"

_PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Vega $vega, Vega-Lite $vega_lite and vega-embed $embed, inlined from
         vl-convert-python $vlc by complexif.plots_page: this page needs no network. -->
    <script type="text/javascript">
__JS__
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page_template(js: str, versions: dict[str, str]) -> str:
    """A DVC HTML template with ``js`` (the Vega libraries, defining ``window.vegaEmbed``)
    inline."""
    for placeholder in (PLOTS, REFRESH, SCRIPTS):
        # DVC replaces placeholders anywhere in the page, script included.
        if placeholder in js:
            raise ValueError(f"the Vega bundle contains DVC's placeholder {placeholder}")
    # '</script' inside the code would end the script element early; '<\/' means the same in JS.
    js = js.replace("</script", "<\\/script")
    # In a function of its own, the bundle's top-level names (const n, function t, ...) stay
    # out of the page's global scope, where DVC's own scripts declare theirs (var spec).
    js = "(() => {\n" + js + "\n})();"
    # The code goes in last: nothing is substituted inside it.
    return string.Template(_PAGE).substitute(versions).replace("__JS__", js)


def vega_bundle() -> tuple[str, dict[str, str]]:
    """The Vega libraries as one classic script, and their versions."""
    from importlib.metadata import version

    import vl_convert

    js = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    versions = {
        "vega": vl_convert.get_vega_version(),
        "vega_lite": VEGA_LITE,
        "embed": vl_convert.get_vega_embed_version(),
        "vlc": version("vl-convert-python"),
    }
    return js, versions


def write_template(path: str | Path) -> Path:
    js, versions = vega_bundle()
    write_text(path, page_template(js, versions))
    return Path(path)


def use_template(repo: str | Path) -> Path:
    """Write the template to ``<repo>/.dvc/tmp`` and set ``plots.html_template`` in the repo's
    local DVC config; returns the template's path."""
    path = write_template(Path(repo) / ".dvc" / DEFAULT_TEMPLATE)
    subprocess.run(
        [sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", DEFAULT_TEMPLATE],
        cwd=repo,
        check=True,
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m complexif.plots_page",
        description="Make `dvc plots show/diff` pages work offline (Vega inlined).",
    )
    parser.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    args = parser.parse_args(argv)
    path = use_template(args.repo)
    print(f"wrote {path}; `dvc plots show` now makes a page that needs no network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
