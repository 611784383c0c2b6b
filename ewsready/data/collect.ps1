<#
.SYNOPSIS
    Gathers what ewsready's offline audit reads, with Get- cmdlets only.

.DESCRIPTION
    Run this in the Exchange Management Shell (Exchange 2013 or later) as an account
    that may read the Exchange configuration, for example a member of
    "View-Only Organization Management". It changes nothing: the only Exchange and
    Active Directory cmdlets it calls are Get- cmdlets, and the only things it creates
    are the output folder, the files in it and a progress bar. ewsready's own tests
    check that no other command is called.

    It writes one Export-Clixml file per query into -OutputFolder, named after the
    cmdlet without its hyphen, and a manifest:

      GetExchangeServer.xml               Get-ExchangeServer
      GetWebServicesVirtualDirectory.xml  Get-WebServicesVirtualDirectory
      GetExchangeCertificate.xml          Get-ExchangeCertificate -Server, each server
      GetAcceptedDomain.xml               Get-AcceptedDomain
      GetManagementRoleAssignment.xml     Get-ManagementRoleAssignment
                                            -Role ApplicationImpersonation
                                            -GetEffectiveUsers
      GetManagementScope.xml              Get-ManagementScope
      GetRecipient.xml                    Get-Recipient -RecipientPreviewFilter, for
                                            each scope of those role assignments
      GetUser.xml                         Get-User -Identity <ServiceAccount>
      GetMailbox.xml                      Get-Mailbox -ResultSize Unlimited (or each
                                            -Mailbox address)
      GetMailboxFolderStatistics.xml      Get-MailboxFolderStatistics
                                            -FolderScope Calendar, each mailbox
      GetMailboxFolderPermission.xml      Get-MailboxFolderPermission on each
                                            mailbox's calendar
      GetADPermission.xml                 Get-ADPermission on each mailbox, only the
                                            rows granting Send-As
      GetADUser.xml                       Get-ADUser for the service account, when
                                            the ActiveDirectory module is installed
      manifest.json                       script version, start and end time, and for
                                            each file: the command, ok / partial /
                                            failed / skipped, the object count and the
                                            errors

    Rows of the per-mailbox files carry a note property EwsreadyMailbox (the
    mailbox's primary SMTP address), and certificates EwsreadyServer, so the audit can
    tell whose they are. Certificates are written with their properties spelled out
    (Services, Status, ...), because an exported ExchangeCertificate otherwise holds
    little more than RawData.

    Then, on any machine with ewsready:  pytest --from-export=<OutputFolder>

    Over many thousands of mailboxes the per-mailbox queries take a while; -Mailbox
    limits them (and Get-Mailbox) to the addresses invited to the calendar service.

.PARAMETER OutputFolder
    A new or empty folder for the files. An earlier run's files are never mixed in.

.PARAMETER ServiceAccount
    The calendar service's account, as its user principal name.

.PARAMETER Mailbox
    Optional: the invited addresses. Without it every mailbox is read.

.EXAMPLE
    .\collect.ps1 -OutputFolder C:\Temp\ewsready -ServiceAccount svc-calendar@contoso.com

.EXAMPLE
    .\collect.ps1 -OutputFolder C:\Temp\ewsready -ServiceAccount svc-calendar@contoso.com -Mailbox (Get-Content .\invited.txt)
#>
#Requires -Version 3.0
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string] $OutputFolder,

    [Parameter(Mandatory = $true)]
    [string] $ServiceAccount,

    [string[]] $Mailbox
)

$CollectorVersion = '1.0'

# Export-Clixml's default depth; nested objects deeper than this become their text,
# which is all the audit reads of them.
$ExportDepth = 2

# The manifest keeps this many error texts per file; the rest are only counted.
$ErrorsKept = 200

if (-not (Get-Command -Name Get-ExchangeServer -ErrorAction SilentlyContinue)) {
    throw 'Get-ExchangeServer is not available: run this script in the Exchange Management Shell.'
}

if (Test-Path -LiteralPath $OutputFolder) {
    # Files from an earlier run could be read as this run's, so start empty.
    if (Get-ChildItem -LiteralPath $OutputFolder -Force | Select-Object -First 1) {
        throw "The folder $OutputFolder is not empty; name a new or empty folder."
    }
}
else {
    $null = New-Item -ItemType Directory -Path $OutputFolder -ErrorAction Stop
}
$OutputFolder = (Resolve-Path -LiteralPath $OutputFolder).ProviderPath

$mailboxFilter = $null
if ($Mailbox) {
    $mailboxFilter = @($Mailbox)
}

$manifest = [ordered]@{
    collector      = 'ewsready collect.ps1'
    script_version = $CollectorVersion
    started_utc    = (Get-Date).ToUniversalTime().ToString('o')
    finished_utc   = $null
    computer       = $env:COMPUTERNAME
    service_account = $ServiceAccount
    mailbox_filter = $mailboxFilter
    files          = [ordered]@{}
}

# Filled by the steps and read by the ones after them; only names, addresses and
# filters are kept, so memory does not grow with the size of each object.
$servers = New-Object System.Collections.Generic.List[string]
$mailboxes = New-Object System.Collections.Generic.List[object]
$calendars = @{}
$scopeNames = New-Object System.Collections.Generic.List[string]
$scopeFilters = New-Object System.Collections.Generic.List[object]

# The step being run: its error texts and the mailboxes it could not read.
$stepErrors = New-Object System.Collections.Generic.List[string]
$stepErrorCount = 0
$stepFailures = [ordered]@{}
$stepExtra = [ordered]@{}

function Save-Manifest {
    # Written after every step, so an interrupted run still says what it gathered.
    $manifest | ConvertTo-Json -Depth 6 |
        Out-File -LiteralPath (Join-Path -Path $OutputFolder -ChildPath 'manifest.json') -Encoding UTF8
}

function Add-StepError {
    param([string] $Text, [string] $MailboxAddress, $Problem)

    $script:stepErrorCount++
    if ($script:stepErrors.Count -lt $ErrorsKept) {
        $script:stepErrors.Add($Text)
    }
    if ($MailboxAddress) {
        # The exception's type name is not translated, unlike the message, so the
        # audit can tell "no such mailbox" from a failure to read it.
        $reason = $null
        if ($Problem) {
            $reason = [string]$Problem.CategoryInfo.Reason
        }
        $script:stepFailures[$MailboxAddress] = [ordered]@{ error = $Text; reason = $reason }
    }
}

function Add-StepErrorRecords {
    param($Records)

    foreach ($record in $Records) {
        Add-StepError -Text ([string]$record)
    }
}

function Invoke-ExportStep {
    param(
        [string] $File,
        [string] $Command,
        [scriptblock] $Collect,
        [string] $SkipReason
    )

    $path = Join-Path -Path $OutputFolder -ChildPath $File
    $script:stepErrors = New-Object System.Collections.Generic.List[string]
    $script:stepErrorCount = 0
    $script:stepFailures = [ordered]@{}
    $script:stepExtra = [ordered]@{}
    $script:stepCount = 0
    $status = 'ok'

    if ($SkipReason) {
        $status = 'skipped'
        Add-StepError -Text $SkipReason
        Write-Warning "Skipping ${File}: $SkipReason"
    }
    else {
        Write-Host "Collecting $File ($Command)"
        try {
            # Streamed straight into the file, so a large organisation's objects are
            # never all held in memory.
            & $Collect |
                ForEach-Object { $script:stepCount++; $_ } |
                Export-Clixml -LiteralPath $path -Depth $ExportDepth -Encoding UTF8
        }
        catch {
            $status = 'failed'
            Add-StepError -Text ([string]$_)
            Write-Warning "${File} failed: $_"
        }
        if ($status -eq 'ok' -and $script:stepErrorCount -gt 0) {
            $status = 'partial'
            Write-Warning "${File}: $($script:stepErrorCount) error(s), see manifest.json"
        }
    }

    $entry = [ordered]@{
        command     = $Command
        status      = $status
        objects     = $script:stepCount
        error_count = $script:stepErrorCount
        errors      = @($script:stepErrors)
        failures    = $script:stepFailures
    }
    foreach ($key in $script:stepExtra.Keys) {
        $entry[$key] = $script:stepExtra[$key]
    }
    $manifest.files[$File] = $entry
    Save-Manifest
}

function Show-MailboxProgress {
    param([string] $Activity, [int] $Done)

    # Redrawing the bar for every mailbox would cost more than the query itself.
    if ($Done % 50 -eq 0 -and $mailboxes.Count -gt 0) {
        Write-Progress -Activity $Activity -Status "$Done of $($mailboxes.Count) mailboxes" -PercentComplete (100 * $Done / $mailboxes.Count)
    }
}

# --- Organisation-wide configuration ---------------------------------------------

Invoke-ExportStep -File 'GetExchangeServer.xml' -Command 'Get-ExchangeServer' -Collect {
    Get-ExchangeServer -ErrorAction SilentlyContinue -ErrorVariable problems |
        ForEach-Object {
            # Edge Transport servers hold no mailboxes and answer no certificate query
            # from inside the organisation.
            if (-not $_.IsEdgeServer) {
                $servers.Add([string]$_.Name)
            }
            $_
        }
    Add-StepErrorRecords $problems
}

Invoke-ExportStep -File 'GetWebServicesVirtualDirectory.xml' -Command 'Get-WebServicesVirtualDirectory' -Collect {
    Get-WebServicesVirtualDirectory -ErrorAction SilentlyContinue -ErrorVariable problems
    Add-StepErrorRecords $problems
}

Invoke-ExportStep -File 'GetExchangeCertificate.xml' -Command 'Get-ExchangeCertificate -Server <each server>' -Collect {
    foreach ($server in $servers) {
        try {
            Get-ExchangeCertificate -Server $server -ErrorAction Stop |
                Select-Object -Property @(
                    @{ Name = 'Identity'; Expression = { [string]$_.Identity } },
                    'Thumbprint',
                    'Subject',
                    'Issuer',
                    'FriendlyName',
                    'SerialNumber',
                    'NotBefore',
                    'NotAfter',
                    'IsSelfSigned',
                    'HasPrivateKey',
                    'PublicKeySize',
                    @{ Name = 'CertificateDomains'; Expression = { @($_.CertificateDomains | ForEach-Object { [string]$_ }) } },
                    @{ Name = 'Services'; Expression = { [string]$_.Services } },
                    @{ Name = 'Status'; Expression = { [string]$_.Status } },
                    @{ Name = 'RootCAType'; Expression = { [string]$_.RootCAType } },
                    @{ Name = 'SignatureAlgorithm'; Expression = { [string]$_.SignatureAlgorithm.FriendlyName } },
                    'RawData',
                    @{ Name = 'EwsreadyServer'; Expression = { $server } }
                )
        }
        catch {
            Add-StepError -Text "${server}: $_"
        }
    }
}

Invoke-ExportStep -File 'GetAcceptedDomain.xml' -Command 'Get-AcceptedDomain' -Collect {
    Get-AcceptedDomain -ErrorAction SilentlyContinue -ErrorVariable problems
    Add-StepErrorRecords $problems
}

# --- Impersonation: who holds the role, and over which mailboxes -----------------

Invoke-ExportStep -File 'GetManagementRoleAssignment.xml' -Command 'Get-ManagementRoleAssignment -Role ApplicationImpersonation -GetEffectiveUsers' -Collect {
    # -GetEffectiveUsers lists the members of groups that hold the role, so an
    # assignment through a group counts for the service account.
    Get-ManagementRoleAssignment -Role ApplicationImpersonation -GetEffectiveUsers -ErrorAction SilentlyContinue -ErrorVariable problems |
        ForEach-Object {
            # The scope's name, not the text of its AD identity (a canonical path).
            $scope = [string]$_.CustomRecipientWriteScope.Name
            if ($scope -and -not $scopeNames.Contains($scope)) {
                $scopeNames.Add($scope)
            }
            $_
        }
    Add-StepErrorRecords $problems
}

Invoke-ExportStep -File 'GetManagementScope.xml' -Command 'Get-ManagementScope' -Collect {
    Get-ManagementScope -ErrorAction SilentlyContinue -ErrorVariable problems |
        ForEach-Object {
            if ($scopeNames.Contains([string]$_.Name)) {
                $scopeFilters.Add([pscustomobject]@{ Name = [string]$_.Name; Filter = [string]$_.RecipientFilter })
            }
            $_
        }
    Add-StepErrorRecords $problems
}

# OPATH filters cannot be evaluated offline, so Exchange itself says which recipients
# each impersonation scope covers.
Invoke-ExportStep -File 'GetRecipient.xml' -Command 'Get-Recipient -RecipientPreviewFilter <each impersonation scope> -ResultSize Unlimited' -Collect {
    $stepExtra['filters'] = @($scopeFilters | ForEach-Object { $_.Filter })
    foreach ($scope in $scopeFilters) {
        if (-not $scope.Filter) {
            continue
        }
        try {
            Get-Recipient -RecipientPreviewFilter $scope.Filter -ResultSize Unlimited -ErrorAction Stop |
                Add-Member -NotePropertyName EwsreadyScope -NotePropertyValue $scope.Name -PassThru |
                Add-Member -NotePropertyName EwsreadyRecipientFilter -NotePropertyValue $scope.Filter -PassThru
        }
        catch {
            Add-StepError -Text "$($scope.Name): $_"
        }
    }
}

# --- The service account ---------------------------------------------------------

Invoke-ExportStep -File 'GetUser.xml' -Command 'Get-User -Identity <ServiceAccount>' -Collect {
    Get-User -Identity $ServiceAccount -ErrorAction Stop
}

$adSkip = $null
if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) {
    $adSkip = 'the ActiveDirectory PowerShell module is not installed on this machine'
}
Invoke-ExportStep -File 'GetADUser.xml' -Command 'Get-ADUser -Filter "UserPrincipalName -eq <ServiceAccount>"' -SkipReason $adSkip -Collect {
    Import-Module -Name ActiveDirectory -ErrorAction Stop
    # Inside the filter's quotes a quote is written twice.
    $upn = $ServiceAccount.Replace("'", "''")
    $users = @(Get-ADUser -Filter "UserPrincipalName -eq '$upn'" -ErrorAction Stop -Properties @(
        'Enabled',
        'LockedOut',
        'PasswordNeverExpires',
        'PasswordExpired',
        'PasswordLastSet',
        'msDS-UserPasswordExpiryTimeComputed',
        'AccountExpirationDate',
        'UserPrincipalName'
    ))
    # An empty answer is not an error to Get-ADUser -Filter, but it is to the audit.
    if ($users.Count -eq 0) {
        Add-StepError -Text "no Active Directory user has the UPN $ServiceAccount"
    }
    $users
}

# --- Mailboxes --------------------------------------------------------------------

$mailboxCommand = 'Get-Mailbox -ResultSize Unlimited'
if ($mailboxFilter) {
    $mailboxCommand = 'Get-Mailbox -Identity <each -Mailbox address>'
}
Invoke-ExportStep -File 'GetMailbox.xml' -Command $mailboxCommand -Collect {
    $seen = @{}
    $found = {
        $primary = [string]$_.PrimarySmtpAddress
        # Two invited addresses of one mailbox would otherwise read it twice.
        if (-not $seen.ContainsKey($primary)) {
            $seen[$primary] = $true
            $mailboxes.Add([pscustomobject]@{
                Address           = $primary
                DistinguishedName = [string]$_.DistinguishedName
            })
            $_
        }
    }
    if ($mailboxFilter) {
        foreach ($address in $mailboxFilter) {
            try {
                Get-Mailbox -Identity $address -ErrorAction Stop | ForEach-Object $found
            }
            catch {
                Add-StepError -Text "${address}: $_" -MailboxAddress $address -Problem $_
            }
        }
    }
    else {
        Get-Mailbox -ResultSize Unlimited -ErrorAction SilentlyContinue -ErrorVariable problems |
            ForEach-Object $found
        Add-StepErrorRecords $problems
    }
}

$mailboxSkip = $null
if ($manifest.files['GetMailbox.xml'].status -eq 'failed') {
    $mailboxSkip = 'GetMailbox.xml failed, so no mailbox is known'
}

Invoke-ExportStep -File 'GetMailboxFolderStatistics.xml' -Command 'Get-Mailbox | Get-MailboxFolderStatistics -FolderScope Calendar' -SkipReason $mailboxSkip -Collect {
    $done = 0
    foreach ($box in $mailboxes) {
        Show-MailboxProgress -Activity 'Calendar folders' -Done $done
        $done++
        try {
            Get-MailboxFolderStatistics -Identity $box.DistinguishedName -FolderScope Calendar -ErrorAction Stop |
                ForEach-Object {
                    # The default calendar is known by its type; its name is localized
                    # (Kalender, Calendrier, ...).
                    if ($_.FolderType -eq 'Calendar' -and -not $calendars.ContainsKey($box.Address)) {
                        $calendars[$box.Address] = [string]$_.Name
                    }
                    $_
                } |
                Add-Member -NotePropertyName EwsreadyMailbox -NotePropertyValue $box.Address -PassThru
        }
        catch {
            Add-StepError -Text "$($box.Address): $_" -MailboxAddress $box.Address -Problem $_
        }
    }
    Write-Progress -Activity 'Calendar folders' -Completed
}

Invoke-ExportStep -File 'GetMailboxFolderPermission.xml' -Command 'Get-MailboxFolderPermission -Identity <mailbox>:\<calendar of FolderType Calendar>' -SkipReason $mailboxSkip -Collect {
    $done = 0
    foreach ($box in $mailboxes) {
        Show-MailboxProgress -Activity 'Calendar permissions' -Done $done
        $done++
        $calendar = $calendars[$box.Address]
        if (-not $calendar) {
            Add-StepError -Text "$($box.Address): no folder of type Calendar was found" -MailboxAddress $box.Address
            continue
        }
        try {
            Get-MailboxFolderPermission -Identity ('{0}:\{1}' -f $box.Address, $calendar) -ErrorAction Stop |
                Add-Member -NotePropertyName EwsreadyMailbox -NotePropertyValue $box.Address -PassThru
        }
        catch {
            Add-StepError -Text "$($box.Address): $_" -MailboxAddress $box.Address -Problem $_
        }
    }
    Write-Progress -Activity 'Calendar permissions' -Completed
}

Invoke-ExportStep -File 'GetADPermission.xml' -Command "Get-Mailbox | Get-ADPermission | Where-Object ExtendedRights -like '*Send-As*'" -SkipReason $mailboxSkip -Collect {
    $done = 0
    foreach ($box in $mailboxes) {
        Show-MailboxProgress -Activity 'Send As permissions' -Done $done
        $done++
        try {
            # Only Send-As rows: a mailbox has dozens of other entries, and the file
            # would be mostly them.
            Get-ADPermission -Identity $box.DistinguishedName -ErrorAction Stop |
                Where-Object { $_.ExtendedRights -like '*Send-As*' } |
                Add-Member -NotePropertyName EwsreadyMailbox -NotePropertyValue $box.Address -PassThru
        }
        catch {
            Add-StepError -Text "$($box.Address): $_" -MailboxAddress $box.Address -Problem $_
        }
    }
    Write-Progress -Activity 'Send As permissions' -Completed
}

$manifest.finished_utc = (Get-Date).ToUniversalTime().ToString('o')
Save-Manifest
Write-Host "Done. The files are in $OutputFolder; audit them with: pytest `"--from-export=$OutputFolder`""
