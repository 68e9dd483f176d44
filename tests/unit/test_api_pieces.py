"""Pieces of the API that need no server: JSON merge patch and the policy Enforcer."""

from __future__ import annotations

import copy

import pytest
from oslo_policy.policy import PolicyNotRegistered

from teapot.api.auth import Identity
from teapot.api.hosts.routes import merge_patch
from teapot.api.policy import Enforcer, Forbidden

# --- merge_patch (RFC 7396) ---------------------------------------------------------------------------


def test_merge_patch_null_removes_a_member():
    assert merge_patch({"a": 1, "b": 2}, {"a": None}) == {"b": 2}


def test_merge_patch_null_for_a_missing_member_is_a_no_op():
    assert merge_patch({"a": 1}, {"z": None}) == {"a": 1}


def test_merge_patch_merges_nested_objects():
    target = {"bmc": {"address": "redfish://old/redfish/v1/Systems/1", "credentialsName": "s"},
              "online": False}
    patched = merge_patch(target, {"bmc": {"address": "redfish://new/redfish/v1/Systems/1"},
                                   "online": True})
    assert patched == {"bmc": {"address": "redfish://new/redfish/v1/Systems/1",
                               "credentialsName": "s"}, "online": True}


def test_merge_patch_null_removes_nested_member():
    assert merge_patch({"image": {"url": "u", "checksum": "c"}}, {"image": {"checksum": None}}) == {
        "image": {"url": "u"}}


@pytest.mark.parametrize("target, patch, result", [
    ({"a": {"b": 1}}, {"a": [1, 2]}, {"a": [1, 2]}),      # a non-object value replaces
    ({"a": [1, 2]}, {"a": {"b": 1}}, {"a": {"b": 1}}),    # an object replaces a non-object
    ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),              # arrays are replaced, not merged
    ({"a": "x"}, {"a": {"b": None}}, {"a": {}}),
    ({"a": 1}, "text", "text"),                           # a non-object patch replaces everything
    ({"a": 1}, ["x"], ["x"]),
    ("text", {"a": 1}, {"a": 1}),
    ({"a": 1}, {}, {"a": 1}),
])
def test_merge_patch_rfc7396_cases(target, patch, result):
    assert merge_patch(target, patch) == result


def test_merge_patch_rfc7396_appendix_example():
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
              "tags": ["example", "sample"], "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None},
             "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}


def test_merge_patch_changes_neither_argument():
    target = {"bmc": {"address": "a", "credentialsName": "s"}, "labels": ["x"]}
    patch = {"bmc": {"address": "b"}, "labels": None, "new": {"deep": [1]}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert target == target_before and patch == patch_before
    result["new"]["deep"].append(2)
    result["bmc"]["address"] = "c"
    assert patch == patch_before and target == target_before


# --- policy -------------------------------------------------------------------------------------------

RULES = ["teapot:host:get_all", "teapot:host:get", "teapot:host:create", "teapot:host:update",
         "teapot:host:delete"]


def _identity(*roles: str) -> Identity:
    return Identity(user_id="u-1", user_name="alice", project_id="p-1", project_name="demo",
                    roles=roles, system_scope=None, is_admin_project=False)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("roles", [("admin",), ("admin", "member", "reader")])
def test_admin_is_allowed(enforcer, rule, roles):
    enforcer.authorize(rule, _identity(*roles))  # no Forbidden


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("roles", [("member",), ("reader",), ("member", "reader"), ()])
def test_member_and_reader_are_forbidden(enforcer, rule, roles):
    with pytest.raises(Forbidden) as err:
        enforcer.authorize(rule, _identity(*roles))
    message = str(err.value)
    assert rule in message
    assert "admin role" in message
    assert f"your roles: {', '.join(roles) or 'none'}" in message


def test_unregistered_rule_is_refused_even_to_admin(enforcer):
    with pytest.raises(PolicyNotRegistered):
        enforcer.authorize("teapot:cluster:create", _identity("admin"))


def test_enforcer_without_conf_allows_admin():
    Enforcer().authorize("teapot:host:get_all", _identity("admin"))
