"""The `edge` invoke tasks: option parsing, the checks made before any host is contacted, the site's lock and
Ctrl-C for the tasks that change a site, and what they print.
Each task imports what it uses in its body, so `./kit --list` stays fast. Nothing imports this package but
the kit's tasks.py."""
