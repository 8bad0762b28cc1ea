"""Fragment renderer with a module-level memo dict (render_cache scenario).

``_RENDERED`` memoises rendered HTML fragments.  The cache key includes the
cart revision, which changes on every request, so entries are never reused
and never evicted: the module-global dict grows by one string per render.
"""

from __future__ import annotations

_TEMPLATE = (
    '<section class="cart" data-user="{user}" data-rev="{rev}">'
    "<h2>{title}</h2><p>{count} item(s), total {total:.2f} EUR</p>"
    '<a href="/checkout?u={user}&r={rev}">Checkout</a></section>'
)

_RENDERED: dict[str, str] = {}


def render_cart(page: str, user_id: int, rev: int, count: int, total: float) -> str:
    key = f"{page}|{user_id}|{rev}"
    html = _RENDERED.get(key)
    if html is None:
        fields = {
            "user": user_id,
            "rev": rev,
            "title": page.title(),
            "count": count,
            "total": total,
        }
        html = _RENDERED[key] = _TEMPLATE.format_map(fields)  # LEAK-SITE
    return html
