"""ensure_instance against moto's DMS (made faithful by moto_dms): parameters, reuse, waiting, failures."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from conftest import REGION, make_secret
from moto.dms.models import dms_backends
from moto.moto_api import state_manager

from pg2rds.dms.instance import ensure_instance
from pg2rds.errors import PhaseTimedOut, ReplicationInstanceFailed, ResourceConflict
from pg2rds.naming import OWNER_TAG, ResourceNames
from pg2rds.spec import parse_spec
from pg2rds.state import InstanceState
from pg2rds_emulator import moto_dms

ACCOUNT = "123456789012"


@pytest.fixture
def dms(aws):
    moto_dms.install(moto_dms.FakeEngine())
    return boto3.client("dms", region_name=REGION)


def make_spec(migration_id: str = "orders", **overrides):
    data = {
        "migration_id": migration_id,
        "source": {"host": "src.example", "database": "app", "secret_arn": make_secret("u", "p")},
        "target": {"host": "tgt.example", "database": "app", "secret_arn": make_secret("u", "p")},
        "polling": {"initial_seconds": 1, "max_seconds": 4, "backoff": 2},
        "tags": {"team": "data"},
    }
    data.update(overrides)
    return parse_spec(data)


def instances(dms) -> list[dict]:
    return dms.describe_replication_instances()["ReplicationInstances"]


def test_creates_the_instance_with_the_spec_settings_and_tags(dms) -> None:
    spec = make_spec(
        instance={
            "instance_class": "dms.r5.large",
            "allocated_storage_gb": 100,
            "engine_version": "3.5.3",
            "subnet_group": "private-dms",
            "security_group_ids": ["sg-0123456789abcdef0", "sg-89abcdef"],
            "multi_az": True,
        }
    )
    state = ensure_instance(dms, spec, None)

    [created] = instances(dms)
    assert created["ReplicationInstanceIdentifier"] == ResourceNames("orders").instance == state.identifier
    assert created["ReplicationInstanceClass"] == "dms.r5.large"
    assert created["AllocatedStorage"] == 100
    assert created["EngineVersion"] == "3.5.3"
    assert created["ReplicationSubnetGroup"]["ReplicationSubnetGroupIdentifier"] == "private-dms"
    assert [g["VpcSecurityGroupId"] for g in created["VpcSecurityGroups"]] == [
        "sg-0123456789abcdef0",
        "sg-89abcdef",
    ]
    assert created["MultiAZ"] is True
    assert created["PubliclyAccessible"] is False
    tags = dms.list_tags_for_resource(ResourceArn=state.arn)["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == {OWNER_TAG: "orders", "team": "data"}
    assert state.owned is True


def test_waits_until_available_then_is_ready_without_creating_twice(dms) -> None:
    spec = make_spec()
    first = ensure_instance(dms, spec, None)
    assert (first.ready, first.status, first.polls, first.wait_seconds) == (False, "creating", 1, 1)
    assert first.started_at

    second = ensure_instance(dms, spec, first)
    assert (second.ready, second.status, second.polls) == (True, "available", 2)
    assert second.started_at == first.started_at and second.arn == first.arn

    third = ensure_instance(dms, spec, second)
    assert third.ready and third.arn == first.arn
    assert len(instances(dms)) == 1


def test_wait_grows_geometrically_to_the_cap(dms) -> None:
    state_manager.set_transition("dms::replicationinstance", {"progression": "manual", "times": 1000})
    try:
        spec = make_spec()
        state, waits = None, []
        for _ in range(5):
            state = ensure_instance(dms, spec, state)
            waits.append(state.wait_seconds)
        assert not state.ready and state.polls == 5
        assert waits == [1, 2, 4, 4, 4]
    finally:
        state_manager.unset_transition("dms::replicationinstance")


def test_times_out_when_the_instance_stays_unavailable(dms) -> None:
    spec = make_spec(polling={"instance_timeout_minutes": 5})
    first = ensure_instance(dms, spec, None)
    long_ago = (datetime.now(UTC) - timedelta(minutes=6)).isoformat(timespec="seconds")
    dms_backends[ACCOUNT][REGION].replication_instances[first.arn].status = "modifying"
    with pytest.raises(PhaseTimedOut, match="still 'modifying'"):
        ensure_instance(dms, spec, first.model_copy(update={"started_at": long_ago}))


def test_a_failed_instance_raises_with_its_status_and_a_fix(dms) -> None:
    spec = make_spec()
    first = ensure_instance(dms, spec, None)
    dms_backends[ACCOUNT][REGION].replication_instances[first.arn].status = "incompatible-network"
    with pytest.raises(ReplicationInstanceFailed, match="incompatible-network.*Fix: .*subnet_group"):
        ensure_instance(dms, spec, first)


def test_an_existing_instance_is_described_not_created(dms) -> None:
    existing = dms.create_replication_instance(
        ReplicationInstanceIdentifier="shared-dms", ReplicationInstanceClass="dms.t3.large"
    )["ReplicationInstance"]
    spec = make_spec(instance={"existing_arn": existing["ReplicationInstanceArn"]})

    state = ensure_instance(dms, spec, None)

    assert (state.arn, state.identifier, state.owned) == (
        existing["ReplicationInstanceArn"],
        "shared-dms",
        False,
    )
    assert [i["ReplicationInstanceIdentifier"] for i in instances(dms)] == ["shared-dms"]
    assert dms.list_tags_for_resource(ResourceArn=state.arn)["TagList"] == []


def test_a_missing_existing_instance_is_a_clear_error(dms) -> None:
    spec = make_spec(instance={"existing_arn": f"arn:aws:dms:{REGION}:{ACCOUNT}:rep:gone"})
    with pytest.raises(ReplicationInstanceFailed, match="does not exist"):
        ensure_instance(dms, spec, None)
    assert dms.describe_replication_instances()["ReplicationInstances"] == []


@pytest.mark.parametrize("tags", [[], [{"Key": OWNER_TAG, "Value": "someone-else"}]])
def test_refuses_a_same_named_instance_we_did_not_create(dms, tags) -> None:
    spec = make_spec()
    dms.create_replication_instance(
        ReplicationInstanceIdentifier=ResourceNames("orders").instance,
        ReplicationInstanceClass="dms.t3.micro",
        Tags=tags,
    )
    with pytest.raises(ResourceConflict, match="will not reuse or delete"):
        ensure_instance(dms, spec, None)
    [instance] = instances(dms)
    assert instance["ReplicationInstanceClass"] == "dms.t3.micro"


def test_state_round_trips_through_json(dms) -> None:
    state = ensure_instance(dms, make_spec(), None)
    assert InstanceState.model_validate_json(state.model_dump_json()) == state
