"""Shared pieces of the HTML reports: style, tables, and the few lines of JS that sort a table
when its header is clicked (no framework, no external assets)."""
import html

CSS = ("body{font-family:sans-serif;margin:1.5em;max-width:1200px}"
       "table{border-collapse:collapse;margin:.5em 0}"
       "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
       "td.l,th.l{text-align:left}.bad{background:#fdd}.ok{color:#070}.fail{color:#b00}"
       "th.sort{cursor:pointer;background:#eef}th.sort:after{content:' \\2195';color:#889}"
       "pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}"
       ".key{font-size:1.1em}.verdict{font-size:1.6em;margin:.2em 0}"
       ".thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;max-width:330px}"
       ".thumbs img{min-width:160px;max-width:320px;image-rendering:pixelated;"
       "border:1px solid #999}figcaption{font-size:.85em}"
       ".charts{display:flex;flex-wrap:wrap}"
       ".charts svg{width:49%;min-width:420px;height:auto}")

# Click a header of a table.sortable: sort its rows by that column (numbers numerically,
# "-" last), again to reverse.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('th').forEach(function (th, col) {
    th.classList.add('sort');
    th.addEventListener('click', function () {
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows, 1);
      var dir = th.dataset.dir === 'asc' ? -1 : 1;
      th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      function key(r) { var s = r.cells[col].textContent, n = parseFloat(s);
        return isNaN(n) ? s : n; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) return typeof x === 'number' ? -1 : 1;
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def table(headers, rows, sortable=False, row_classes=None, escaped=False, left_columns=1):
    """headers: column titles; rows: lists of cell texts, escaped here unless `escaped` (the
    caller's HTML); the first `left_columns` columns are left-aligned text. row_classes: one
    CSS class or "" per row."""
    classes = row_classes or [""] * len(rows)
    return "".join([table_head(headers, sortable, left_columns)] +
                   [table_row(row, cls, escaped, left_columns)
                    for cls, row in zip(classes, rows)] + ["</table>"])


def table_head(headers, sortable=False, left_columns=1):
    """The opening of a table and its header row (rows follow, then "</table>")."""
    return "<table%s><tr>%s</tr>" % (" class='sortable'" if sortable else "", "".join(
        "<th%s>%s</th>" % (" class='l'" if i < left_columns else "", html.escape(h))
        for i, h in enumerate(headers)))


def table_row(row, cls="", escaped=False, left_columns=1):
    cell = (lambda c: str(c)) if escaped else (lambda c: html.escape(str(c)))
    return "<tr%s>%s</tr>" % (" class='%s'" % cls if cls else "", "".join(
        "<td%s>%s</td>" % (" class='l'" if i < left_columns else "", cell(c))
        for i, c in enumerate(row)))
