"""Search use cases: versions and models matching a filter, one keyset page at
a time, limited to what the caller may see; and the raw event list."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Literal, TypeVar

from modelyard.domain import filters
from modelyard.domain import identity as auth
from modelyard.domain.entities import Model, Version
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_name
from modelyard.service.core import Page, RegistryCore, check_page_size
from modelyard.service.rendered import RevisionCache
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import RegistryTx

T = TypeVar("T")


class SearchUseCases(RegistryCore):
    """Filtered, sorted, paged searches over versions and models."""

    def search_versions(
        self,
        filter_text: str | None = None,
        *,
        order_by: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        namespace: str | None = None,
        where: filters.Node | None = None,
        actor: Principal,
    ) -> Page[Version]:
        """Versions matching a filter, sorted, one page at a time (keyset cursor).

        Requires: read on ``namespace`` if given. Results are limited to what
        the caller may see: whole namespaces it reads, the production view of
        those it consumes (added to the filter, so pages stay exact).

        ``where`` is a filter already parsed (another door's filter language,
        translated to filter nodes), ANDed with ``filter_text``.
        """
        return self._search(
            "versions",
            lambda tx, **q: tx.search_versions(**q),
            lambda tx, ids: tx.load_versions(ids),
            lambda view, actor, ver: view.version(actor, ver),
            filter_text,
            order_by,
            page_size,
            page_token,
            namespace,
            where,
            actor,
        )

    def search_versions_rendered(
        self,
        filter_text: str | None = None,
        *,
        order_by: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        namespace: str | None = None,
        actor: Principal,
        render: Callable[[Version], T],
        cache: RevisionCache[T],
    ) -> Page[T]:
        """:meth:`search_versions` with each version already rendered by
        ``render``, from ``cache`` when it holds the version at the revision
        this call reads (see :mod:`~modelyard.service.rendered`).

        The same page, cursor, errors and view as :meth:`search_versions`.
        Versions the caller sees through the production view (trimmed per
        caller) are never cached: such a caller takes the uncached path.
        """
        limit, node, order = self._query("versions", filter_text, order_by, page_size, namespace)
        with self.db.read() as tx:
            view = ProductionView(tx)
            node = self._scoped(view, actor, "versions", node, namespace)
            revision = tx.data_revision() if _sees_whole_versions(actor) else None
            ids, token = tx.search_versions(
                node=node, order=order, limit=limit, cursor=page_token, namespace=namespace
            )
            if revision is None:
                versions = tx.load_versions(ids)
                if not actor.reads_everything:
                    versions = [view.version(actor, v) for v in versions]
                return Page([render(v) for v in versions], token)
            found = cache.get_many(revision, ids)
            missing = [i for i in ids if i not in found]
            if missing:
                fresh: dict[Hashable, T] = {v.id: render(v) for v in tx.load_versions(missing)}
                # On PostgreSQL (read committed) each statement reads the
                # newest commit: store only what was loaded at ``revision``.
                if tx.data_revision() == revision:
                    cache.put_many(revision, fresh)
                found.update(fresh)
            return Page([found[i] for i in ids if i in found], token)

    def answer_at_revision(
        self,
        cache: RevisionCache[T],
        key: Hashable,
        compute: Callable[[], T],
        *,
        actor: Principal,
    ) -> T:
        """``compute()``, the answer to a read that depends only on the data
        and on ``key``, kept in ``cache`` for the data revision it was
        computed at (see :mod:`~modelyard.service.rendered`).

        The revision (newest event id) is read before and after ``compute``:
        equal, no write committed in between (every write records an event),
        so every transaction ``compute`` opened read exactly that revision's
        data and the answer is stored under it. A later call at the same
        revision gets it back for the cost of one read; any write moves the
        revision on. The key is made per view: a caller who reads everything
        shares answers with the others who do, anyone else only with callers
        of the same roles; callers who see versions through the production
        view (trimmed per caller) are never served from the cache.
        """
        if not _sees_whole_versions(actor):
            return compute()
        view = (
            "*"
            if actor.reads_everything
            else tuple(
                sorted((ns, tuple(sorted(r.value for r in rs))) for ns, rs in actor.roles.items())
            )
        )
        full = (key, view)
        with self.db.read() as tx:
            before = tx.data_revision()
        if before is None:  # pragma: no cover - a read transaction has one
            return compute()
        found = cache.get_many(before, (full,))
        if full in found:
            return found[full]
        value = compute()
        with self.db.read() as tx:
            after = tx.data_revision()
        if after == before:
            cache.put_many(before, {full: value})
        return value

    def search_models(
        self,
        filter_text: str | None = None,
        *,
        order_by: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        namespace: str | None = None,
        where: filters.Node | None = None,
        actor: Principal,
    ) -> Page[Model]:
        """Models matching a filter, sorted, one page at a time (keyset cursor).

        Requires: as :meth:`search_versions`; a consumed namespace shows only
        models that hold a version in its production view.
        """
        return self._search(
            "models",
            lambda tx, **q: tx.search_models(**q),
            lambda tx, ids: tx.load_models(ids),
            lambda view, actor, model: view.model(actor, model),
            filter_text,
            order_by,
            page_size,
            page_token,
            namespace,
            where,
            actor,
        )

    def _search(
        self,
        target: Literal["models", "versions"],
        find: Callable[..., tuple[list[int], str | None]],
        load: Callable[[RegistryTx, list[int]], list[T]],
        narrow: Callable[[ProductionView, Principal, T], T],
        filter_text: str | None,
        order_by: str | None,
        page_size: int,
        page_token: str | None,
        namespace: str | None,
        where: filters.Node | None,
        actor: Principal,
    ) -> Page[T]:
        """One search page: parse, scope to ``actor``, find ids, load them, and
        trim each to the caller's view (``narrow``) unless it reads everything.

        One read transaction, and the production view computed in it once per
        namespace, however many items the page holds."""
        limit, node, order = self._query(target, filter_text, order_by, page_size, namespace)
        node = filters.all_of(node, where)
        with self.db.read() as tx:
            view = ProductionView(tx)
            node = self._scoped(view, actor, target, node, namespace)
            ids, token = find(
                tx, node=node, order=order, limit=limit, cursor=page_token, namespace=namespace
            )
            items = load(tx, ids)
            if not actor.reads_everything:
                items = [narrow(view, actor, item) for item in items]
            return Page(items, token)

    @staticmethod
    def _scoped(
        view: ProductionView,
        actor: Principal,
        target: Literal["models", "versions"],
        node: filters.Node | None,
        namespace: str | None,
    ) -> filters.Node | None:
        """The search filter narrowed to what ``actor`` may see."""
        if namespace is not None:
            rule = view.readable(actor, namespace)
            if rule is None:
                return node
            return auth.combine(node, rule if target == "versions" else filters.AnyVersion(rule))
        return auth.combine(node, view.visibility(actor, target))

    @staticmethod
    def _query(
        target: Literal["models", "versions"],
        filter_text: str | None,
        order_by: str | None,
        page_size: int,
        namespace: str | None,
    ) -> tuple[int, filters.Node | None, filters.OrderBy]:
        """Validate and parse the parts of a search request."""
        limit = check_page_size(page_size)
        node = filters.parse_filter(filter_text or "", target)
        order = filters.parse_order_by(order_by, target)
        if namespace is not None:
            validate_name(namespace, kind="namespace")
        return limit, node, order

    def list_events(
        self, *, after: int = 0, limit: int = 100, actor: Principal
    ) -> list[dict[str, Any]]:
        """Outbox events after an id (the audit log and stream build on this).

        Requires: nothing; the list holds only events of namespaces the caller
        reads (instance-wide events, namespace ``*``: instance admin or a
        global read role).
        """
        namespaces = None if actor.reads_everything else actor.namespaces_with(Permission.READ)
        with self.db.read() as tx:
            return tx.list_events(after=after, limit=check_page_size(limit), namespaces=namespaces)


def _sees_whole_versions(actor: Principal) -> bool:
    """True if ``actor`` sees every version a search returns it whole (no
    namespace through the production view alone, which trims lineage)."""
    if actor.reads_everything:
        return True
    if Permission.CONSUME in actor.permissions_in(auth.GLOBAL_SCOPE):
        return False
    return not any(actor.production_only(ns) for ns in actor.namespaces_with(Permission.CONSUME))
