-- Argo CD health of a crucible.dev TuningJob: Succeeded is Healthy, Failed is Degraded, a search that
-- is running is Progressing (with its trial count).
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then
  return hs
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
end
local message = obj.status.reason or phase or "Pending"
if obj.status.progress ~= nil then
  message = message .. " (" .. obj.status.progress .. " trials)"
end
hs.message = message
return hs
