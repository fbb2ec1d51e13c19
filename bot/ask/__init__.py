"""ASK: /ops explain, questions in the incident thread, deployment risk."""
