-- Argo CD health of a crucible.dev ModelDeployment.
--   Degraded:    a candidate was rolled back (Degraded=True), or the requested model cannot be served
--                and nothing is rolling out (Ready=False, Progressing=False).
--   Suspended:   a candidate waits for approval (Promoted=False, reason AwaitingApproval).
--   Progressing: a rollout or canary is running, or the status is for an older generation.
--   Healthy:     Ready=True and nothing in progress.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local ready, progressing = conditions["Ready"], conditions["Progressing"]
local degraded, promoted = conditions["Degraded"], conditions["Promoted"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message
elseif promoted ~= nil and promoted.status == "False" and promoted.reason == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = promoted.message
elseif progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = progressing.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif ready ~= nil then
  hs.status = "Degraded"
  hs.message = ready.message
end
return hs
