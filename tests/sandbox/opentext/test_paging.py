"""HAL envelopes with offset/count/sort/order paging over more than one page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.fixtures.opentext_sandbox import PROJECT_MODELS, OpenTextSandbox

INSTANCES = 23


def _offset_of(link: dict) -> int:
    return int(parse_qs(urlsplit(link["href"]).query)["offset"][0])


def test_tasks_page_through_in_order(opentext_sandbox: OpenTextSandbox):
    opentext_sandbox.deploy(PROJECT_MODELS / "qa_review.bpmn20.xml")
    started = [opentext_sandbox.start_process("qa_review", f"batch-{n:02d}")["id"] for n in range(INSTANCES)]

    seen, offset = [], 0
    while True:
        response = opentext_sandbox.request(
            "GET",
            "/tasks",
            params={"candidateGroup": "qa-reviewers", "sort": "createTime", "order": "asc", "offset": offset},
        )
        body = response.json()
        assert body["page"]["totalElements"] == INSTANCES
        assert body["page"]["totalPages"] == 3
        page_tasks = body["_embedded"]["tasks"]
        assert len(page_tasks) == min(10, INSTANCES - offset)
        seen += [t["processInstanceId"] for t in page_tasks]
        assert _offset_of(body["_links"]["self"]) == offset
        assert _offset_of(body["_links"]["last"]) == 20
        if "next" not in body["_links"]:
            break
        offset = _offset_of(body["_links"]["next"])
        assert "candidateGroup=qa-reviewers" in body["_links"]["next"]["href"]
    assert seen == started
    assert _offset_of(body["_links"]["prev"]) == 10

    newest_first = opentext_sandbox.request(
        "GET", "/tasks", params={"sort": "createTime", "order": "desc", "count": 5}
    ).json()
    assert [t["processInstanceId"] for t in newest_first["_embedded"]["tasks"]] == started[::-1][:5]

    instances = opentext_sandbox.request(
        "GET", "/process-instances", params={"processDefinitionKey": "qa_review", "offset": 20}
    ).json()
    assert [i["businessKey"] for i in instances["_embedded"]["processInstances"]] == [
        "batch-20",
        "batch-21",
        "batch-22",
    ]

    by_business_key = opentext_sandbox.request(
        "GET", "/process-instances", params={"businessKey": "batch-07"}
    ).json()
    assert [i["id"] for i in by_business_key["_embedded"]["processInstances"]] == [started[7]]


def test_empty_page_has_no_embedded_collection(sandbox: OpenTextSandbox):
    body = sandbox.request("GET", "/tasks", params={"candidateGroup": "nobody"}).json()
    assert "_embedded" not in body
    assert body["page"]["totalElements"] == 0
    assert "next" not in body["_links"]


def test_invalid_sort_and_order_are_refused(sandbox: OpenTextSandbox):
    bad_sort = sandbox.request("GET", "/tasks", params={"sort": "colour"})
    assert bad_sort.status_code == 400 and "'colour' is not a valid property" in bad_sort.json()["exception"]
    bad_order = sandbox.request("GET", "/tasks", params={"order": "sideways"})
    assert bad_order.status_code == 400
