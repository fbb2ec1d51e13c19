"""The incident card's view of an incident row: the one place an ORM `Incident` becomes the
plain `IncidentCardView` that `bot.slack.render.card` renders.

Built here, by the callers' side, so that the renderer stays a pure function of plain data and
never imports the database models. Every field is copied (the links dict too): the view must not
change when the session that loaded the row does.
"""

from __future__ import annotations

from bot.db.models import Incident
from bot.slack.render.card import IncidentCardView


def card_view(incident: Incident) -> IncidentCardView:
    return IncidentCardView(
        reference=incident.reference, title=incident.title, severity=incident.severity, status=incident.status,
        cluster=incident.cluster, namespace=incident.namespace, service=incident.service,
        alert_count=incident.alert_count, firing_count=incident.firing_count, links=dict(incident.links),
        created_at=incident.created_at, updated_at=incident.updated_at, category=incident.category,
        acknowledged_by=incident.acknowledged_by, incident_id=incident.id,
        related_id=incident.related_incident_id, previous_id=incident.previous_incident_id,
        merged_into_id=incident.merged_into_id, commander=incident.commander,
        latest_update=incident.latest_update, latest_update_by=incident.latest_update_by,
        latest_update_at=incident.latest_update_at, resolved_by=incident.resolved_by,
    )
