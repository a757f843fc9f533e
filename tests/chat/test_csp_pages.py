"""The chat's pages carry the strict Content-Security-Policy and need nothing it blocks."""

from __future__ import annotations

import pytest

from tests.csp import assert_strict_page


# In a transaction: a page may read through the core's database thread (another connection).
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/", "/rooms/csp-check/"])
def test_the_chats_pages_carry_the_strict_policy_and_need_nothing_it_blocks(alice_client, path):
    assert_strict_page(alice_client, path)
