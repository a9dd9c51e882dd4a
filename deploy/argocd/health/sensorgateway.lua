-- Argo CD health check for SensorGateway (homelab.home.arpa/v1alpha1), from the
-- kstatus conditions every homelab kind reports: Ready, Reconciling, Stalled,
-- each with observedGeneration. Written for deploy/argocd/argocd-cm.yaml.
local hs = {}
local generation = obj.metadata.generation or 0
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the SensorGateway controller to report status"
  return hs
end
if obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the SensorGateway controller to observe generation " .. generation
  return hs
end
local ready, stalled, reconciling, extra = nil, nil, nil, {}
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c
  elseif c.type == "Stalled" then stalled = c
  elseif c.type == "Reconciling" then reconciling = c
  else extra[c.type] = c end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
if ready == nil or (ready.observedGeneration ~= nil and ready.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for a Ready condition for generation " .. generation
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
if (reconciling ~= nil and reconciling.status == "True") or ready.status == "Unknown" then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
