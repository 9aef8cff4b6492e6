"""The offline page template: DVC's placeholders where DVC fills them, the Vega code inline and
unable to end its script element or leak names into the page (DVC's own run in
tests/test_metrics_and_plots.py)."""

from __future__ import annotations

import pytest

from complexif.plots_page import page_template

VERSIONS = {"vega": "6.2.0", "vega_lite": "5.21", "embed": "7.0.2", "vlc": "1.9.0"}


def test_template_has_dvcs_placeholders_and_no_cdn_scripts():
    page = page_template("window.vegaEmbed = function () {};", VERSIONS)
    assert page.count("{plot_divs}") == 1 and page.count("{refresh_tag}") == 1
    # Without {scripts} DVC adds none of its CDN <script src=...> tags.
    assert "{scripts}" not in page and "src=" not in page
    assert "Vega 6.2.0, Vega-Lite 5.21 and vega-embed 7.0.2" in page
    body = page.split('<script type="text/javascript">', 1)[1].split("</script>", 1)[0]
    assert body.strip() == "(() => {\nwindow.vegaEmbed = function () {};\n})();"


def test_code_cannot_end_the_script_element():
    page = page_template('const s = "</script><b>";', VERSIONS)
    assert page.count("</script") == 1  # the element's own end
    assert 'const s = "<\\/script><b>";' in page


@pytest.mark.parametrize("placeholder", ["{plot_divs}", "{scripts}", "{refresh_tag}"])
def test_code_holding_a_dvc_placeholder_is_refused(placeholder):
    with pytest.raises(ValueError, match="placeholder"):
        page_template(f"const s = '{placeholder}';", VERSIONS)
