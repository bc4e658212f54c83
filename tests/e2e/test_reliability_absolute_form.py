"""An absolute-form request (``GET http://host/p HTTP/1.1``): original_url keeps the target as
received, and everything that builds a URL or a page from it uses its path."""

from __future__ import annotations

from evserve import App, static

from .conftest import RawClient


def get(server, target: str):
    with RawClient(server) as client:
        client.send(f"GET {target} HTTP/1.1\r\nHost: h.test\r\n\r\n".encode())
        return client.read_response()


def test_static_redirects_a_directory_by_its_path(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("hi")
    app = App()
    app.use("/static", static(str(tmp_path)))
    with app.run_in_thread() as server:
        for target, location in (
            ("http://h.test/static/sub?x=1", "/static/sub/?x=1"),
            ("http://h.test/static", "/static/"),
            ("http://h.test//static/sub", None),  # a leading "//" path: never protocol-relative
        ):
            res = get(server, target)
            if location is not None:
                assert (res.status, res.header("Location")) == (301, location)
            else:
                assert not (res.header("Location") or "").startswith("//")


def test_the_404_page_names_the_path():
    app = App()
    with app.run_in_thread() as server:
        res = get(server, "http://h.test/nope?q=1")
        assert res.status == 404
        assert "Cannot GET /nope" in res.text
        assert "h.test" not in res.text
