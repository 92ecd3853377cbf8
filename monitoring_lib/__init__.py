"""Model monitoring library: extraction, data quality, drift and summaries, with no Airflow import."""

__version__ = "0.1.0"
