"""Response behaviours checked against Express 5, through the real connection code in memory
(``TestClient``): ``res.format`` handlers taking ``next``, ``res.links`` with lists,
``res.download`` of a relative path, the app's ``etag`` setting for files, a cookie ``path`` of
``None``, a Date header set by the handler.
"""

from __future__ import annotations

from evserve import App
from evserve.testing import TestClient

from .conftest import exchange


def fetch(client, target="/", headers=None):
    """One GET, byte for byte, over a fresh connection; the response exactly as it came."""
    return exchange(client, "GET", target, headers)


# -- res.format -------------------------------------------------------------------------------

def test_format_handler_taking_next_gets_the_routers_next(client_for):
    app = App()

    @app.get("/")
    def negotiate(req, res):
        res.format({"text/plain": lambda req, res, next: next(ValueError("from format"))})

    def on_error(err, req, res, next):
        res.status(200).send(f"error: {err}")

    app.use(on_error)
    r = client_for(app).get("/", headers={"Accept": "text/plain"})
    assert (r.status_code, r.text) == (200, "error: from format")


def test_format_handler_next_continues_the_stack(client_for):
    app = App()
    app.get("/", lambda req, res: res.format({"json": lambda req, res, next: next()}))
    app.use(lambda req, res: res.send("after"))
    r = client_for(app).get("/", headers={"Accept": "application/json"})
    assert (r.status_code, r.text) == (200, "after")


def test_format_handlers_without_next_keep_working(client_for):
    app = App()
    app.get("/none", lambda req, res: res.format({"text/plain": lambda: res.send("none")}))
    app.get("/two", lambda req, res: res.format({"text/plain": lambda req, res: res.send("two")}))
    client = client_for(app)
    for path in ("none", "two"):
        r = client.get(f"/{path}", headers={"Accept": "text/plain"})
        assert (r.status_code, r.text) == (200, path)


# -- res.links --------------------------------------------------------------------------------


def test_links_list_gives_one_link_per_url_with_the_same_rel():
    app = App()
    seen = {}

    @app.get("/")
    def links(req, res):
        res.links({"next": "http://a/?page=2", "pages": ["http://a/?page=1", "http://a/?page=2"]})
        res.links({"last": ("http://a/?page=9",)})
        seen["link"] = res.get("Link")
        res.end()

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    assert seen["link"] == (
        '<http://a/?page=2>; rel="next", <http://a/?page=1>; rel="pages", '
        '<http://a/?page=2>; rel="pages", <http://a/?page=9>; rel="last"'
    )


# -- res.download / res.send_file ---------------------------------------------------------------


def test_download_relative_path_without_root_is_taken_from_the_working_directory(
    client_for, tmp_path, monkeypatch
):
    (tmp_path / "sub").mkdir()
    (tmp_path / "f.txt").write_text("hello")
    monkeypatch.chdir(tmp_path)
    app = App()
    app.get("/plain", lambda req, res: res.download("f.txt"))
    app.get("/dotted", lambda req, res: res.download("sub/../f.txt", "g.txt"))
    client = client_for(app)
    r = client.get("/plain")
    assert (r.status_code, r.text) == (200, "hello")
    assert r.headers["Content-Disposition"] == 'attachment; filename="f.txt"'
    r = client.get("/dotted")  # resolved like Node's path.resolve
    assert (r.status_code, r.text) == (200, "hello")
    assert r.headers["Content-Disposition"] == 'attachment; filename="g.txt"'


def test_send_file_relative_path_without_root_still_fails(client_for, tmp_path, monkeypatch):
    (tmp_path / "f.txt").write_text("hello")
    monkeypatch.chdir(tmp_path)
    app = App()
    app.get("/", lambda req, res: res.send_file("f.txt"))
    app.use(lambda err, req, res, next: res.status(500).send(type(err).__name__))
    r = client_for(app).get("/")
    assert (r.status_code, r.text) == (500, "TypeError")


def test_app_etag_false_turns_off_the_file_etag(client_for, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    path = str(tmp_path / "f.txt")
    app = App(etag=False)
    app.get("/file", lambda req, res: res.send_file(path))
    app.get("/download", lambda req, res: res.download(path))
    app.get("/explicit", lambda req, res: res.send_file(path, etag=True))
    client = client_for(app)
    for target in ("/file", "/download"):
        r = client.get(target)
        assert r.status_code == 200 and "ETag" not in r.headers, target
    assert "ETag" in client.get("/explicit").headers


def test_app_etag_default_keeps_the_file_etag(client_for, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    path = str(tmp_path / "f.txt")
    app = App()
    app.get("/file", lambda req, res: res.send_file(path))
    app.get("/download", lambda req, res: res.download(path))
    app.get("/explicit", lambda req, res: res.download(path, etag=False))
    client = client_for(app)
    assert "ETag" in client.get("/file").headers
    assert "ETag" in client.get("/download").headers
    assert "ETag" not in client.get("/explicit").headers


# -- cookies ------------------------------------------------------------------------------------


def test_cookie_path_none_is_slash(client_for):
    app = App()
    app.get("/set", lambda req, res: res.cookie("a", "b", path=None).end())
    app.get("/clear", lambda req, res: res.clear_cookie("a", path=None).end())
    app.get("/empty", lambda req, res: res.cookie("a", "b", path="").end())
    client = client_for(app)
    assert fetch(client, "/set").header("set-cookie") == "a=b; Path=/"
    cleared = fetch(client, "/clear").header("set-cookie")
    assert cleared.startswith("a=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert fetch(client, "/empty").header("set-cookie") == "a=b"  # as Express: "" leaves Path out


# -- Date -------------------------------------------------------------------------------------


DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


def test_date_set_by_the_handler_is_kept(client_for):
    app = App()
    app.get("/send", lambda req, res: res.set("Date", DATE).send("x"))
    app.get("/stream", lambda req, res: (res.set("date", DATE).write("x"), res.end()))
    app.get("/end", lambda req, res: res.set("Date", DATE).status(204).end())
    client = client_for(app)
    for target in ("/send", "/stream", "/end"):
        res = fetch(client, target)
        assert [v for k, v in res.headers if k.lower() == "date"] == [DATE], target


def test_date_is_added_when_the_handler_sets_none(client_for):
    client = client_for(App().get("/", lambda req, res: res.send("x")))
    dates = [v for k, v in fetch(client).headers if k.lower() == "date"]
    assert len(dates) == 1 and dates[0].endswith(" GMT") and dates[0] != DATE
