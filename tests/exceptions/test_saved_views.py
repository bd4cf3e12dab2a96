"""Saved views: named filter sets, personal or shared, with live counts beside the list."""
from exceptions import services
from exceptions.models import Case, Queue, SavedView
from opsview.models import AuditEvent


def make_cases(n, **fields):
    queue = Queue.objects.get(slug="finance-ops")
    for i in range(Case.objects.count(), Case.objects.count() + n):
        case = Case(type="invoice_blocked", fingerprint=f"F{i}", title=f"Case {i}",
                    queue=queue, object_kind="invoice", object_id=f"I{i}", **fields)
        services.refresh_sla(case)
        case.save()


def views_listed(client):
    return {item["name"]: item["count"] for item in
            client.get("/exceptions/").context["saved_views"]}


def test_a_saved_view_lists_with_its_live_count(client, logged_in):
    logged_in("finance_ops", username="fiona")
    make_cases(2, severity="high")
    make_cases(3, severity="low")
    response = client.post("/exceptions/views/save", {
        "name": "High ones", "query": "severity=high&page=3&csrfmiddlewaretoken=x"})
    assert response.status_code == 302 and response["Location"] == "/exceptions/?severity=high"
    assert SavedView.objects.get().query == "severity=high"
    assert views_listed(client)["High ones"] == 2
    make_cases(1, severity="high")
    assert views_listed(client)["High ones"] == 3  # live
    assert views_listed(client)["Unassigned"] == 6
    assert AuditEvent.objects.filter(action="saved_view.created").exists()


def test_personal_views_are_private_and_shared_ones_are_everyones(client, logged_in,
                                                                    role_user):
    owner = role_user("fiona", "finance_ops")
    SavedView.objects.create(owner=owner, name="Mine only", query="severity=low")
    SavedView.objects.create(owner=owner, name="Team", query="severity=high", shared=True)
    logged_in("integration", username="ines")
    listed = views_listed(client)
    assert "Team" in listed and "Mine only" not in listed


def test_only_the_owner_renames_or_deletes_and_executives_cannot_share(client, logged_in,
                                                                       role_user):
    owner = role_user("fiona", "finance_ops")
    team = SavedView.objects.create(owner=owner, name="Team", query="", shared=True)
    logged_in("executive", username="carla")
    assert client.post(f"/exceptions/views/{team.pk}/rename", {"name": "Mine"}).status_code == 403
    assert client.post(f"/exceptions/views/{team.pk}/delete").status_code == 403
    assert client.post("/exceptions/views/save", {"name": "x", "shared": "on"}).status_code == 403
    assert SavedView.objects.get().name == "Team"
    # A personal view is fine for anyone who can read cases.
    assert client.post("/exceptions/views/save", {"name": "Mine"}).status_code == 302
    assert SavedView.objects.filter(owner__username="carla", shared=False).exists()


def test_rename_and_delete_by_the_owner_with_clear_errors(client, logged_in):
    logged_in("finance_ops", username="fiona")
    client.post("/exceptions/views/save", {"name": "One", "query": ""})
    client.post("/exceptions/views/save", {"name": "Two", "query": ""})
    one = SavedView.objects.get(name="One")
    response = client.post(f"/exceptions/views/{one.pk}/rename", {"name": "Two"}, follow=True)
    assert "already have a view named" in response.content.decode()
    response = client.post("/exceptions/views/save", {"name": "  "}, follow=True)
    assert "needs a name" in response.content.decode()
    client.post(f"/exceptions/views/{one.pk}/rename", {"name": "Uno"})
    assert SavedView.objects.get(pk=one.pk).name == "Uno"
    client.post(f"/exceptions/views/{one.pk}/delete")
    assert list(SavedView.objects.values_list("name", flat=True)) == ["Two"]
    assert AuditEvent.objects.filter(action__in=["saved_view.renamed",
                                                 "saved_view.deleted"]).count() == 2


def test_a_triager_sees_my_work_first_and_an_executive_does_not(client, logged_in):
    logged_in("finance_ops", username="fiona")
    make_cases(2)
    listed = client.get("/exceptions/?work=finance-ops&sort=mine").context["saved_views"]
    assert (listed[0]["name"], listed[0]["count"], listed[0]["active"]) == ("My work", 2, True)
    logged_in("executive", username="carla")
    assert "My work" not in views_listed(client)
