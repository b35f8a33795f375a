"""The student in the browser: ``vedit web build EXPORT_DIR -o DIR`` writes a static site that
answers intents offline with onnxruntime-web and the JavaScript runtime in ``web/`` (see
:mod:`vedit.web.site` and docs/web.md)."""

from vedit.web.site import SiteReport, build_site, web_meta

__all__ = ["SiteReport", "build_site", "web_meta"]
