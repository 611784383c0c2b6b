"""Exchange's shell misbehaving, seen through the whole audit on the lab: mailboxes a
pipeline could not read, a WSMan fault in the middle of a pipeline, a Receive that is
never answered."""

from __future__ import annotations

UPN = "svc-calendar@contoso.example"


def test_unread_mailboxes_are_named_with_the_reason_not_reported_as_lacking_rights(
    scenario_run,
):
    run = scenario_run("mailbox_unreadable")
    unknown = run.sentences("could not evaluate")

    assert (
        "The calendar permissions of 2 of 4 target mailboxes could not be read: "
        "ben.okafor@contoso.example (Get-MailboxFolderPermission failed: The folder "
        "permissions could not be read because the mailbox is being moved to another "
        "database) and chloe.martin@contoso.example (Get-MailboxFolderStatistics "
        "failed: The mailbox database 'DB02' that holds this mailbox is dismounted)."
    ) in unknown
    assert (
        "The Send As permissions of dieter.braun@contoso.example could not be read, "
        "because Get-ADPermission failed: Active Directory refused to return the "
        "security descriptor of this object: insufficient access rights."
    ) in unknown
    # Every right is in place: nothing is reported missing, and no fix is offered.
    assert run.sentences("failure") == []
    assert not any(
        "lacks Editor" in s or "may not send as" in s or "No calendar folder" in s
        for s in run.sentences()
    )
    assert not run.commands().strip()
