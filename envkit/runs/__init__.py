"""A run folder's files read back: metrics.jsonl (plot), run.png and the summary in words (summary), the sample
completions (samples), report.html (html_report), sampling from the trained adapter (generate).  Below
envkit.train: the trainer writes its summary and picture with these, and `envkit report` / `envkit generate` read
a finished run with them, without torch at import."""
