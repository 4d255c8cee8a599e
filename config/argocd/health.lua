-- Argo CD health of a callbacks.imcallback.dev/CallbackReceiver, from its status alone:
--   Progressing  the operator has not observed the latest spec yet (observedGeneration), a
--                rollout is under way (Available reason RollingOut, fewer ready pods than
--                spec.replicas), or Ready waits on something that comes by itself (the
--                Deployment being created or its pods starting, a Gateway accepting the route);
--   Healthy      Ready is True and every desired receiver pod is ready;
--   Degraded     Ready is False for any other reason: the message is that reason and the
--                operator's message, which says what to fix.
-- It runs in Argo CD's sandbox for resource customizations: no string or math library (only
-- the base and table ones), so it uses nothing but operators and base functions.
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}
if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready = nil
local available = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    elseif c.type == "Available" then
      available = c
    end
  end
end
if ready == nil then
  hs.message = "Waiting for the Ready condition"
  return hs
end

local reason = ready.reason or ""
local message = ready.message or ""

if ready.status == "True" then
  if available ~= nil and available.reason == "RollingOut" then
    hs.message = "RollingOut: " .. (available.message or "")
    return hs
  end
  local want = nil
  if obj.spec ~= nil then
    want = obj.spec.replicas
  end
  local readyReplicas = obj.status.readyReplicas or 0
  if want ~= nil and readyReplicas < want then
    hs.message = "RollingOut: " .. readyReplicas .. " of " .. want .. " receiver pods are ready"
    return hs
  end
  hs.status = "Healthy"
  hs.message = message
  return hs
end

-- Reasons of Ready that resolve without anyone acting.
local progressing = {
  RollingOut = true,
  DeploymentNotFound = true,
  MinimumReplicasUnavailable = true,
  RoutePending = true,
}
if ready.status ~= "False" or progressing[reason] then
  hs.message = reason .. ": " .. message
  return hs
end
hs.status = "Degraded"
hs.message = reason .. ": " .. message
return hs
