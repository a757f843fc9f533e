"""The chat's pages carry the strict Content-Security-Policy and need nothing it blocks."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.csp import assert_strict_page


@pytest.fixture
def alice_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("alice", password="alice"))
    return client


# In a transaction: a page may read through the core's database thread (another connection).
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/", "/rooms/csp-check/"])
def test_the_chats_pages_carry_the_strict_policy_and_need_nothing_it_blocks(alice_client, path):
    assert_strict_page(alice_client, path)
