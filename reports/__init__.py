"""Reports of finished searches: tables, curves and the HTML/Markdown report.

Reads summary.json and MLflow; never imports a lab's training code.
"""
