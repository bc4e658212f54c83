"""App settings that cannot work are refused when given, not on the first request."""

from __future__ import annotations

import pytest
import requests

from evserve import App
from evserve.server import where_listening

from .conftest import DEADLINE


@pytest.mark.parametrize("value", ["yes", ["10.0.0.0/33"], "10.0.0.1, nonsense", ["loopback", "x"]])
def test_a_trust_proxy_that_does_not_parse_is_a_value_error(value):
    with pytest.raises(ValueError, match="trust_proxy"):
        App(trust_proxy=value)
    with pytest.raises(ValueError, match="trust_proxy"):
        App().set("trust_proxy", value)
    with pytest.raises(ValueError, match="trust_proxy"):
        App().set("trust proxy", value)


@pytest.mark.parametrize("value", [1.5, {"a": 1}, object()])
def test_a_trust_proxy_of_another_kind_is_a_type_error(value):
    with pytest.raises(TypeError, match="trust_proxy"):
        App(trust_proxy=value)


@pytest.mark.parametrize("value", [True, False, 2, "loopback", ["127.0.0.1", "10.0.0.0/8"],
                                   "loopback, uniquelocal", lambda addr, i: True])
def test_every_documented_form_is_accepted(value):
    App(trust_proxy=value)
    App().set("trust_proxy", value)


def test_express_setting_names_set_evserve_settings():
    app = App()
    app.set("trust proxy", True).set("json spaces", 2)
    assert app.settings["trust_proxy"] is True and app.settings["json_spaces"] == 2
    app.get("/", lambda req, res: res.json({"ip": req.ip}))
    with app.run_in_thread() as server:
        res = requests.get(server.url + "/", headers={"X-Forwarded-For": "1.2.3.4"}, timeout=DEADLINE)
    assert res.json() == {"ip": "1.2.3.4"}
    assert "\n  " in res.text  # json spaces


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::"])
def test_the_listening_line_says_when_every_interface_is_served(host):
    line = where_listening(host, 8080)
    assert "every other interface" in line and line.startswith("http://")


def test_the_listening_line_of_one_address_is_its_url():
    assert where_listening("127.0.0.1", 8080) == "http://127.0.0.1:8080"
