"""The insurance-claims demo: a real model, its training data and a scripted period of traffic.

`claims_model` trains the approved-amount regressor (also the retraining callable in the endpoint
config), `scenario` states what happens when, `simulator` turns that into inference rows and late
labels, and `seed` writes them to the source tables the monitoring reads.
"""
