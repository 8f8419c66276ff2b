"""Fault injection switched on and off while the sandbox runs."""

from __future__ import annotations

import pytest
import requests

from tests.fixtures.opentext_sandbox import OpenTextSandbox


def _get(sandbox: OpenTextSandbox, path: str = "/tasks") -> requests.Response:
    return requests.get(
        f"{sandbox.api}{path}", headers={"Authorization": f"Bearer {sandbox.token()}"}, timeout=30
    )


def test_rate_limit_answers_429_with_retry_after_then_recovers(sandbox: OpenTextSandbox):
    sandbox.token()
    sandbox.set_faults(status=429, retry_after=2, times=1)
    limited = _get(sandbox)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json()["fault"]["detail"]["errorcode"] == "policies.ratelimit.QuotaViolation"
    assert _get(sandbox).status_code == 200


def test_service_unavailable_twice_then_recovery(sandbox: OpenTextSandbox):
    sandbox.token()
    sandbox.set_faults(status=503, times=2)
    assert [_get(sandbox).status_code for _ in range(3)] == [503, 503, 200]
    (rule,) = requests.get(f"{sandbox.url}/sandbox/faults", timeout=30).json()["faults"]
    assert rule["applied"] == 2


def test_dropped_connection_gets_no_response(sandbox: OpenTextSandbox):
    sandbox.token()
    sandbox.set_faults(drop_connection=True, times=1)
    with pytest.raises(requests.ConnectionError):
        _get(sandbox)
    assert _get(sandbox).status_code == 200


def test_rules_apply_in_order_and_only_to_their_paths(sandbox: OpenTextSandbox):
    sandbox.token()
    sandbox.set_faults(
        [
            {"status": 502, "times": 1, "path_prefix": "/workflow/v1/process-instances"},
            {"latency_ms": 50, "status": 504, "times": 1},
        ]
    )
    assert _get(sandbox, "/tasks").status_code == 504
    assert _get(sandbox, "/process-instances").status_code == 502
    assert _get(sandbox, "/process-instances").status_code == 200
    assert requests.get(f"{sandbox.url}/sandbox/health", timeout=30).status_code == 200


def test_token_endpoint_faults_and_clearing(sandbox: OpenTextSandbox):
    sandbox.set_faults(status=503, path_prefix="/tenants/")
    assert (
        requests.post(f"{sandbox.url}/tenants/{sandbox.tenant}/oauth2/token", json={}, timeout=30).status_code
        == 503
    )
    sandbox.clear_faults()
    assert sandbox.token(refresh=True)


def test_invalid_fault_rules_are_refused(sandbox: OpenTextSandbox):
    for rule in ({"status": 200}, {"times": 2}, {"status": 503, "colour": "red"}, {"latency_ms": -5}):
        response = requests.post(f"{sandbox.url}/sandbox/faults", json=rule, timeout=30)
        assert response.status_code == 400, rule


def test_revoked_tokens_get_401_until_a_new_token(opentext_sandbox: OpenTextSandbox):
    token = opentext_sandbox.token()
    assert opentext_sandbox.revoke_tokens() == 1
    revoked = requests.get(
        f"{opentext_sandbox.api}/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert revoked.status_code == 401
    assert revoked.json()["fault"]["detail"]["errorcode"] == "keymanagement.service.access_token_not_approved"
    assert _get(opentext_sandbox).status_code == 401
    assert opentext_sandbox.token(refresh=True) != token
    assert _get(opentext_sandbox).status_code == 200


def test_traffic_counts_each_clients_calls_and_connections(sandbox: OpenTextSandbox):
    sandbox.token()
    sandbox.clear_traffic()
    agent = {"User-Agent": "traffic-probe/1"}
    with requests.Session() as pool:
        pool.headers.update({**agent, "Authorization": f"Bearer {sandbox.token()}"})
        form = {"grant_type": "client_credentials", "client_id": sandbox.client_id}
        token_url = f"{sandbox.url}/tenants/{sandbox.tenant}/oauth2/token"
        assert pool.post(token_url, json={**form, "client_secret": sandbox.client_secret}, timeout=30).ok
        assert pool.get(f"{sandbox.api}/tasks", timeout=30).ok
        sandbox.set_faults(status=503, times=1)
        assert pool.get(f"{sandbox.api}/tasks", timeout=30).status_code == 503
        assert pool.get(f"{sandbox.url}/sandbox/health", timeout=30).ok  # not the real API: not counted
    assert requests.get(f"{sandbox.api}/tasks", headers=agent, timeout=30).status_code == 401
    assert sandbox.traffic("traffic-probe") == {"token_requests": 1, "api_requests": 3, "connections": 2}
    sandbox.clear_traffic()
    assert sandbox.traffic("traffic-probe") == {"token_requests": 0, "api_requests": 0, "connections": 0}
