"""One date, time and number format per language (FORMAT_MODULE_PATH in settings.py).

Django's own formats give English three looks on one screen ("Dec. 3, 2026", "12/03/2026",
"1:24 p.m."), and Chinese numbers without grouping. Here each language has one: the SHORT_
names say the same as the long ones, so every page and every table reads alike. Names a
module leaves out (the input formats) come from Django's module for the language.
"""
