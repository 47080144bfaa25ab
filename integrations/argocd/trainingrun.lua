-- Argo CD health of a crucible.dev TrainingRun: Succeeded is Healthy, Failed (a gate or the Job) is
-- Degraded, anything else is Progressing. A status for an older generation is Progressing.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  return hs
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = obj.status.reason or "Failed"
else
  hs.message = phase or "Pending"
end
return hs
