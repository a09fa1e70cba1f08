"""Alert rules: the registry file's (read-only here) and those made through the API, which the
processor picks up within seconds (``alert_rules``; docs/alerting.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status

from api.auth import ADMIN, PrincipalDep, audit_site
from api.deps import RegistryDep, StoreDep, now_ms
from api.errors import DATABASE_DOWN, Responses
from api.schemas.common import ErrorPublic
from api.schemas.rules import RULE_NAME_PATTERN, RuleIn, RulePublic
from peakwatch.config import Registry, Rule, parse_rule, rule_document
from peakwatch.domain.access import Principal
from peakwatch.errors import ConfigError
from peakwatch.store import Store

router = APIRouter(prefix="/rules", tags=["alerts"])

RuleName = Annotated[str, Path(pattern=RULE_NAME_PATTERN, description="The rule's name.")]
_CONFLICT: Responses = {
    status.HTTP_409_CONFLICT: {
        "model": ErrorPublic,
        "description": "The name is taken (by the registry file or another rule).",
    }
}
_NOT_FOUND: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "No such rule in your scope."}
}
_INVALID: Responses = {
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        "model": ErrorPublic,
        "description": "The rule cannot work as written (the reason is given).",
    }
}


def _file_rules(registry: Registry) -> dict[str, Rule]:
    rules: list[Rule] = [*registry.rules, *registry.staleness_rules]
    return {r.name: r for r in rules}


def _checked(body: RuleIn, registry: Registry, principal: Principal) -> Rule:
    """The rule, validated as the registry loader validates it; a scoped admin's rule must name sites,
    all of them in the scope (a rule for every site would reach sites they do not manage)."""
    try:
        rule = parse_rule(body.document(), "rule")
        stored_form = parse_rule(rule_document(rule), "rule")
    except ConfigError as exc:
        detail = "; ".join(exc.problems)  # one line per problem in a file; one string in JSON
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc
    if stored_form != rule:  # what the processor reads back must be this rule, exactly
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="the rule cannot be stored exactly")
    unknown = sorted(set(rule.site_ids) - set(registry.sites))
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"unknown sites {unknown}")
    _require_scope(principal, rule)
    return rule


def _require_scope(principal: Principal, rule: Rule) -> None:
    if principal.global_scope:
        return
    if not rule.site_ids or principal.visible(rule.site_ids) != list(rule.site_ids):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="a rule you make or change must name its sites (site_ids), all of them in your scope",
        )


def _audit(request: Request, rule: Rule | None) -> None:
    """The audit entry records the rule's first site (none for a rule of every site)."""
    audit_site(request, rule.site_ids[0] if rule is not None and rule.site_ids else None)


def _in_file(name: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"rule {name!r} is in the registry file")


def _no_rule(name: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no rule {name!r} in your scope")


def _visible(principal: Principal, rule: Rule) -> bool:
    return principal.global_scope or (bool(rule.site_ids) and bool(principal.visible(rule.site_ids)))


@router.get(
    "",
    response_model=list[RulePublic],
    summary="The alert rules: from the registry file and made through the API",
    description="Threshold rules (on closed KPI windows) and staleness rules (on the clock); "
    "docs/alerting.md explains each field.",
    responses={**DATABASE_DOWN},
)
async def list_rules(registry: RegistryDep, store: StoreDep, principal: PrincipalDep) -> list[RulePublic]:
    """A rule scoped to named sites is shown only with the sites in the caller's scope (and not at all
    when none is)."""
    shown = [RulePublic.from_rule(r) for r in _file_rules(registry).values()]
    for stored in await store.rules.list():
        try:
            shown.append(RulePublic.from_rule(parse_rule(stored.spec, "stored rule"), stored))
        except ConfigError:
            continue  # the processor skips it too (and logs why)
    visible = []
    for rule in shown:
        if rule.site_ids:
            sites = principal.visible(rule.site_ids)
            if not sites:
                continue
            rule = rule.model_copy(update={"site_ids": sites})
        visible.append(rule)
    return visible


@router.post(
    "",
    response_model=RulePublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[ADMIN],
    summary="Make an alert rule (admins; a site admin's rule names its sites)",
    responses={**_CONFLICT, **_INVALID, **DATABASE_DOWN},
)
async def create_rule(
    body: RuleIn, registry: RegistryDep, store: StoreDep, principal: PrincipalDep, request: Request
) -> RulePublic:
    rule = _checked(body, registry, principal)
    _audit(request, rule)
    if rule.name in _file_rules(registry):
        raise _in_file(rule.name)
    stored = await store.rules.create(rule.name, rule_document(rule), principal.user_name, now_ms())
    if stored is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"a rule named {rule.name!r} exists")
    return RulePublic.from_rule(rule, stored)


async def _stored_in_scope(store: Store, registry: Registry, name: str, principal: Principal) -> Rule | None:
    """The stored rule ``name`` as the caller may change it: 409 when only the registry file has it, 404
    when it does not exist or is out of sight, 403 when seen but not wholly in the scope. ``None``: it
    exists but no longer parses (an older peakwatch stored it); only a global admin may then remove it."""
    old = await store.rules.get(name)
    if old is None:
        raise _in_file(name) if name in _file_rules(registry) else _no_rule(name)
    try:
        rule = parse_rule(old.spec, "stored rule")
    except ConfigError:
        if not principal.global_scope:
            raise _no_rule(name) from None
        return None
    if not _visible(principal, rule):
        raise _no_rule(name)
    _require_scope(principal, rule)
    return rule


@router.put(
    "/{name}",
    response_model=RulePublic,
    dependencies=[ADMIN],
    summary="Replace an alert rule made through the API (admins)",
    description="The rule's state (pending, firing) carries over when what it compares stays the same "
    "(its KPI, operator, rate span, sites): a changed threshold judges the next window. Otherwise its "
    "open alerts are closed and it starts afresh. Rules of the registry file are changed in the file.",
    responses={**_NOT_FOUND, **_CONFLICT, **_INVALID, **DATABASE_DOWN},
)
async def replace_rule(
    name: RuleName,
    body: RuleIn,
    registry: RegistryDep,
    store: StoreDep,
    principal: PrincipalDep,
    request: Request,
) -> RulePublic:
    if body.name != name:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="the name differs from the path")
    rule = _checked(body, registry, principal)
    _audit(request, rule)
    await _stored_in_scope(store, registry, name, principal)
    stored = await store.rules.replace(name, rule_document(rule), principal.user_name, now_ms())
    if stored is None:
        raise _no_rule(name)
    return RulePublic.from_rule(rule, stored)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[ADMIN],
    summary="Remove an alert rule made through the API (admins); its open alerts are closed",
    responses={**_NOT_FOUND, **_CONFLICT, **DATABASE_DOWN},
)
async def delete_rule(
    name: RuleName, registry: RegistryDep, store: StoreDep, principal: PrincipalDep, request: Request
) -> None:
    rule = await _stored_in_scope(store, registry, name, principal)
    _audit(request, rule)
    if await store.rules.delete(name) is None:
        raise _no_rule(name)
