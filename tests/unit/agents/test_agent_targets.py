"""Which gateway the agent dials next: the addresses in turn, and a standby's NOT_LEADER answer followed to the
leader it names (once per answer), with the refusal built as the gateway builds it (google.rpc.Status)."""

from __future__ import annotations

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from agents.transport.targets import GatewayTargets, leader_named


def refusal(reason: str, leader: str = "", code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> grpc.aio.AioRpcError:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="fedgate.io", metadata={"leader": leader}))
    status = status_pb2.Status(code=code.value[0], message="no", details=[detail])
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details="no", debug_error_string="")


def test_the_addresses_are_dialled_in_turn() -> None:
    targets = GatewayTargets(("a:1", "b:2"))
    assert targets.current == "a:1"
    targets.next()
    assert targets.current == "b:2"
    targets.next()
    assert targets.current == "a:1"


def test_a_standby_naming_the_leader_is_followed_once_per_answer() -> None:
    targets = GatewayTargets(("a:1", "b:2", "c:3"))
    assert targets.follow(refusal("NOT_LEADER", "c:3")) and targets.current == "c:3"
    # The named leader refuses too (it lost the lease meanwhile): not followed again at once (backoff first).
    assert not targets.follow(refusal("NOT_LEADER", "a:1")) and targets.current == "c:3"
    targets.connected()  # a welcomed stream: the next answer may be followed again
    assert targets.follow(refusal("NOT_LEADER", "a:1")) and targets.current == "a:1"


def test_a_leader_the_config_does_not_list_is_added() -> None:
    targets = GatewayTargets(("a:1",))
    assert targets.follow(refusal("NOT_LEADER", "gw-3.example.org:7443"))
    assert targets.current == "gw-3.example.org:7443"
    targets.next()
    assert targets.current == "a:1"


def test_only_a_not_leader_answer_names_a_leader() -> None:
    assert leader_named(refusal("NOT_LEADER", "b:2")) == "b:2"
    assert leader_named(refusal("STORE_UNREACHABLE", "b:2")) == ""
    assert leader_named(refusal("NOT_LEADER", "b:2", grpc.StatusCode.PERMISSION_DENIED)) == ""
    assert leader_named(refusal("NOT_LEADER", "")) == ""
    assert leader_named(ValueError("not an rpc error")) == ""
