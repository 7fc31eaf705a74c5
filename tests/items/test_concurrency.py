"""Optimistic concurrency on the real pool: concurrent writers with one If-Match, one winner."""

from __future__ import annotations

import asyncio

import httpx

from tests.items.conftest import CommittedAccountFactory

ITEMS = "/api/v1/items"
WRITERS = 5


async def test_concurrent_patches_with_the_same_if_match_have_one_winner(
    committed_client: tuple[httpx.AsyncClient, CommittedAccountFactory],
) -> None:
    client, new_account = committed_client
    account = await new_account()
    created = await client.post(ITEMS, json={"title": "contended"}, headers=account.headers)
    assert created.status_code == 201
    url = f"{ITEMS}/{created.json()['id']}"
    etag = created.headers["etag"]

    async def patch(n: int) -> httpx.Response:
        return await client.patch(
            url, json={"title": f"writer {n}"}, headers={**account.headers, "If-Match": etag}
        )

    responses = await asyncio.gather(*(patch(n) for n in range(WRITERS)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * (WRITERS - 1), [r.text for r in responses]

    winner = next(response for response in responses if response.status_code == 200)
    final = (await client.get(url, headers=account.headers)).json()
    assert final["title"] == winner.json()["title"]
    assert final["version"] == 2


async def test_concurrent_deletes_with_the_same_if_match_have_one_winner(
    committed_client: tuple[httpx.AsyncClient, CommittedAccountFactory],
) -> None:
    client, new_account = committed_client
    account = await new_account()
    created = await client.post(ITEMS, json={"title": "contended"}, headers=account.headers)
    url = f"{ITEMS}/{created.json()['id']}"
    etag = created.headers["etag"]
    responses = await asyncio.gather(
        *(client.delete(url, headers={**account.headers, "If-Match": etag}) for _ in range(3))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 204
    assert statuses.count(204) == 1
    assert set(statuses[1:]) <= {404, 412}
