"""The catalog tells the agent and the guard what each action is, touches and needs."""

from __future__ import annotations

import pytest

from domain import ActionName, Topology
from tools import CATALOG, ParameterError, RollbackModelVersionParams, ThrottleParams, spec_for


class TestCatalogCoverage:
    def test_every_action_name_has_a_spec(self) -> None:
        """Each ActionName the LLM may name has exactly one catalog entry with that name."""
        assert set(CATALOG) == set(ActionName)
        for name, spec in CATALOG.items():
            assert spec.name is name
            assert spec.description

    def test_inverses_name_catalog_actions_only_for_reversible_ones(self) -> None:
        """An inverse is declared only where the action is reversible, and is itself in the catalog."""
        for spec in CATALOG.values():
            if spec.inverse is not None:
                assert spec.reversible
                assert spec.inverse in CATALOG
        assert not CATALOG[ActionName.TRIGGER_RETRAINING].reversible
        assert not CATALOG[ActionName.PURGE_CONTEXT_CACHE].reversible

    def test_escalate_changes_nothing_and_waits_for_no_signal(self) -> None:
        """Escalation pages a human and has nothing to recover or undo."""
        spec = CATALOG[ActionName.ESCALATE]
        assert spec.changes_nothing
        assert spec.recovery.signals == ()
        assert spec.inverse is None

    def test_unknown_action_name_is_a_clear_error(self) -> None:
        """Looking up an action outside the catalog names it and lists the real ones."""
        with pytest.raises(KeyError, match=r"'rm_rf' is not a catalog action .*rollback_model_version"):
            spec_for("rm_rf")


class TestBlastRadius:
    def test_service_action_touches_the_service_share(self, topology: Topology) -> None:
        """A rollback on a service touches that service's share of traffic."""
        assert CATALOG[ActionName.ROLLBACK_MODEL_VERSION].blast_radius(topology, "chat") == 0.5

    def test_failover_touches_every_service_on_the_provider(self, topology: Topology) -> None:
        """A provider failover touches the summed shares of the services it moves."""
        spec = CATALOG[ActionName.FAILOVER_PROVIDER]
        assert spec.blast_radius(topology, "openai") == pytest.approx(0.8)
        assert spec.blast_radius(topology, "openai", spec.validate_params({"services": ["search"]})) == 0.3

    def test_escalate_touches_nothing(self, topology: Topology) -> None:
        """Paging a human changes no traffic."""
        assert CATALOG[ActionName.ESCALATE].blast_radius(topology, "chat") == 0.0

    def test_unknown_target_counts_as_the_whole_fleet(self, topology: Topology) -> None:
        """A target we cannot see is assumed to touch everything, never nothing."""
        assert CATALOG[ActionName.THROTTLE].blast_radius(topology, "ghost") == 1.0
        assert CATALOG[ActionName.FAILOVER_PROVIDER].blast_radius(topology, "nobody") == 1.0


class TestParameters:
    def test_valid_parameters_become_a_typed_model(self) -> None:
        """Raw dicts turn into the action's typed parameter model with defaults filled in."""
        params = CATALOG[ActionName.THROTTLE].validate_params({"admit_fraction": 0.5})
        assert isinstance(params, ThrottleParams)
        assert params.duration_s == 900.0
        assert isinstance(CATALOG[ActionName.ROLLBACK_MODEL_VERSION].validate_params(None), RollbackModelVersionParams)

    @pytest.mark.parametrize(
        ("action", "raw", "field"),
        [
            (ActionName.THROTTLE, {"admit_fraction": 0}, "throttle.parameters.admit_fraction"),
            (ActionName.THROTTLE, {"admit_fraction": 0.5, "max_rps": 10}, "at most one of admit_fraction or max_rps"),
            (ActionName.ROLLBACK_MODEL_VERSION, {"to_version": "http://evil.example/x"}, "to_version"),
            (ActionName.ROLLBACK_PROMPT_VERSION, {"to_version": "v1; rm -rf /"}, "to_version"),
            (ActionName.ESCALATE, {"url": "http://evil.example"}, "escalate.parameters.url"),
            (ActionName.TRIGGER_RETRAINING, {"mode": "drop_tables"}, "trigger_retraining.parameters.mode"),
        ],
    )
    def test_bad_parameters_name_the_action_and_field(
        self, action: ActionName, raw: dict[str, object], field: str
    ) -> None:
        """Invalid, unknown or URL-like parameter values are refused, naming the field."""
        with pytest.raises(ParameterError, match=field):
            CATALOG[action].validate_params(raw)

    def test_parameters_that_are_not_an_object_are_refused(self) -> None:
        """A list or string in place of the parameters object is refused with its type named."""
        with pytest.raises(ParameterError, match="must be an object, got list"):
            CATALOG[ActionName.THROTTLE].validate_params(["admit_fraction"])  # type: ignore[arg-type]


class TestPreconditions:
    def test_rollback_needs_a_previous_version(self, topology: Topology) -> None:
        """A service with no previous model version cannot be rolled back; one with it can."""
        spec = CATALOG[ActionName.ROLLBACK_MODEL_VERSION]
        assert spec.preconditions(topology, "chat", {}) == []
        assert spec.preconditions(topology, "search", {}) == [
            "rollback_model_version: service 'search' has no previous model version to return to"
        ]

    def test_rollback_to_a_version_other_than_the_previous_is_refused(self, topology: Topology) -> None:
        """Rollback only goes back to the recorded previous version, not an arbitrary one."""
        problems = CATALOG[ActionName.ROLLBACK_PROMPT_VERSION].preconditions(topology, "chat", {"to_version": "p1"})
        assert problems and "'p4'" in problems[0]

    def test_failover_needs_a_healthy_backup(self, topology: Topology) -> None:
        """Failover is refused when a moved service has no backup or the backup is unhealthy."""
        spec = CATALOG[ActionName.FAILOVER_PROVIDER]
        assert spec.preconditions(topology, "openai", {}) == []
        assert spec.preconditions(topology, "openai", {}, unhealthy_providers={"anthropic"}) == [
            "failover_provider: backup provider 'anthropic' of 'chat' is unhealthy",
            "failover_provider: backup provider 'anthropic' of 'search' is unhealthy",
        ]
        assert spec.preconditions(topology, "anthropic", {}) == [
            "failover_provider: service 'summarise' has no backup provider"
        ]
        assert spec.preconditions(topology, "azure", {}) == ["failover_provider: no service runs on provider 'azure'"]

    def test_revert_routing_needs_a_previous_routing(self, topology: Topology) -> None:
        """Routing can be reverted only where a previous routing is recorded."""
        spec = CATALOG[ActionName.REVERT_ROUTING]
        assert spec.preconditions(topology, "chat", {}) == []
        assert "no previous routing" in spec.preconditions(topology, "search", {})[0]

    def test_unknown_service_is_named(self, topology: Topology) -> None:
        """A service action on a service not in the topology says which one and lists the known ones."""
        assert CATALOG[ActionName.THROTTLE].preconditions(topology, "ghost", {"admit_fraction": 0.5}) == [
            "throttle: unknown service 'ghost' (known: chat, search, summarise)"
        ]

    def test_bad_parameters_are_reported_as_failed_preconditions(self, topology: Topology) -> None:
        """preconditions() reports parameter problems in words instead of raising."""
        assert (
            "admit_fraction" in CATALOG[ActionName.THROTTLE].preconditions(topology, "chat", {"admit_fraction": 2})[0]
        )

    def test_escalate_is_always_possible(self, topology: Topology) -> None:
        """Paging a human has no preconditions, even for a provider or unknown name."""
        assert CATALOG[ActionName.ESCALATE].preconditions(topology, "openai", {}) == []


class TestInverse:
    def test_rollback_inverse_restores_the_version_it_left(self, topology: Topology) -> None:
        """Undoing a model rollback rolls back again, to the version that was running before."""
        inverse = CATALOG[ActionName.ROLLBACK_MODEL_VERSION].inverse_for(topology, "chat", {})
        assert inverse is not None
        assert (inverse.action, inverse.target, inverse.parameters) == (
            ActionName.ROLLBACK_MODEL_VERSION,
            "chat",
            {"to_version": "m2"},
        )

    def test_failover_inverse_fails_back_the_moved_services(self, topology: Topology) -> None:
        """Undoing a failover moves exactly the moved services back to the original provider."""
        inverse = CATALOG[ActionName.FAILOVER_PROVIDER].inverse_for(topology, "openai", {})
        assert inverse is not None
        assert inverse.target == "anthropic"
        assert inverse.parameters == {"to_provider": "openai", "services": ["chat", "search"]}

    def test_throttle_inverse_lifts_it(self, topology: Topology) -> None:
        """Undoing a throttle admits all traffic again."""
        inverse = CATALOG[ActionName.THROTTLE].inverse_for(topology, "chat", {"admit_fraction": 0.3})
        assert inverse is not None and inverse.parameters == {"admit_fraction": 1.0}

    def test_irreversible_actions_have_no_inverse(self, topology: Topology) -> None:
        """Retraining and cache purges cannot be undone, so no inverse is offered."""
        assert CATALOG[ActionName.TRIGGER_RETRAINING].inverse_for(topology, "chat", {}) is None
        assert CATALOG[ActionName.PURGE_CONTEXT_CACHE].inverse_for(topology, "chat", {}) is None
