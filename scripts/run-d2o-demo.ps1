# Builds d2o and runs the one-command demo (the PowerShell twin of scripts/run-d2o-demo.sh):
# a provider shares a retail data set, a recipient reads it back and analyses it (report.html,
# charts, figures.json), then the server keeps serving for examples/d2o_example.ipynb until
# Ctrl-C (unless --no-serve).
#
#   pwsh scripts/run-d2o-demo.ps1 [--dir DIR] [--port N] [--no-serve]
#
# The arguments are passed to `d2o demo` as they are. CARGO_TARGET_DIR defaults to
# ~/.cache/d2o-target.
$ErrorActionPreference = 'Stop'

$repo = Split-Path -Parent $PSScriptRoot
if (-not $env:CARGO_TARGET_DIR) {
    $env:CARGO_TARGET_DIR = Join-Path (Join-Path $HOME '.cache') 'd2o-target'
}

# Where the demo writes: the value of --dir / --dir=DIR, else d2o-demo (d2o's default).
$dir = 'd2o-demo'
for ($i = 0; $i -lt $args.Count; $i++) {
    if ($args[$i] -eq '--dir' -and ($i + 1) -lt $args.Count) {
        $dir = $args[$i + 1]
    } elseif ($args[$i] -like '--dir=*') {
        $dir = $args[$i].Substring(6)
    }
}
if ([System.IO.Path]::IsPathRooted($dir)) {
    $report = Join-Path $dir 'report.html'
} else {
    $report = Join-Path (Join-Path (Get-Location).Path $dir) 'report.html'
}

Write-Host "== building d2o (cargo build --locked -p d2o-cli, target $env:CARGO_TARGET_DIR)"
Push-Location $repo
try {
    & cargo build --locked -p d2o-cli
    if ($LASTEXITCODE -ne 0) { throw "cargo build failed ($LASTEXITCODE)" }
} finally {
    Pop-Location
}

$exe = if ($IsWindows -or $env:OS -eq 'Windows_NT') { 'd2o.exe' } else { 'd2o' }
$d2o = Join-Path (Join-Path $env:CARGO_TARGET_DIR 'debug') $exe

Write-Host "== d2o demo $($args -join ' ')"
Write-Host "   the report will be at $report"
& $d2o demo @args
$status = $LASTEXITCODE
if (Test-Path $report) {
    Write-Output "report: $report"
    $creds = Join-Path (Join-Path (Split-Path -Parent $report) '.creds') 'config.share'
    Write-Output "recipient notebook: $(Join-Path (Join-Path $repo 'examples') 'd2o_example.ipynb') (DELTA_SHARING_PROFILE=$creds)"
}
exit $status
