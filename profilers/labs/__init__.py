"""The labs, one folder each (spec, measure, analysis, plots, section, cli); ``profilers/registry.py`` names them."""
