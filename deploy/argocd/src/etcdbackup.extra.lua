-- EtcdBackup's own branches of its Argo CD health check. deploy/argocd/render
-- puts the lines under each `-- @slot NAME` where kstatus.lua.tmpl says {{NAME}}.

-- @slot before_stalled
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Backups are suspended (spec.suspend)"
  return hs
end

-- @slot before_healthy
-- A backup that succeeded long ago is not healthy: Stale says so.
local stale = extra["Stale"]
if stale ~= nil and stale.status == "True" then
  hs.status = "Degraded"
  hs.message = (stale.reason or "Stale") .. ": " .. (stale.message or "")
  return hs
end
