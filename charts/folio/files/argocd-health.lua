-- Argo CD health check for folio's RenderJob (folio.dev/v1alpha1), installed in
-- argocd-cm as resource.customizations.health.folio.dev_RenderJob (see
-- charts/folio/ARGOCD.md). Argo CD runs it without Lua's string and math libraries,
-- so messages are joined with `..` and tostring only.
--
-- Queued and Rendering are on their way (Progressing). Succeeded is Healthy, also
-- after its PDF was deleted at the end of its retention (status.outputExpiredAt).
-- Cancelled is Suspended, as a suspended Kubernetes Job is: stopped on request, it
-- will not render. Failed, Expired and Blocked (the account cannot pay) need someone
-- (Degraded). A status written for an older spec than metadata.generation says
-- nothing yet about the current one.

-- A field of a table, or nil when `t` is not a table (a hand-written object may hold
-- anything where folio writes a table).
local function field(t, key)
  if type(t) == "table" then
    return t[key]
  end
  return nil
end

-- A non-empty string, or nil.
local function text(value)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return nil
end

local function condition_message(status, wanted)
  local conditions = field(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if field(condition, "type") == wanted then
      return text(field(condition, "message"))
    end
  end
  return nil
end

local hs = {}
local status = field(obj, "status")
local phase = field(status, "phase")
local generation = field(field(obj, "metadata"), "generation")
local observed = field(status, "observedGeneration")

if type(status) ~= "table" or phase == nil
  or (type(generation) == "number" and type(observed) == "number" and generation > observed) then
  hs.status = "Progressing"
  if type(generation) == "number" then
    hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "waiting for the operator to observe the job"
  end
  return hs
end

local ready = condition_message(status, "Ready")
local error_message = text(field(status, "errorMessage"))

if phase == "Queued" or phase == "Rendering" then
  hs.status = "Progressing"
  hs.message = ready or phase
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  local pages = field(status, "pageCount")
  if type(pages) == "number" then
    hs.message = "rendered " .. tostring(pages) .. (pages == 1 and " page" or " pages")
  else
    hs.message = ready or "rendered"
  end
  local expired_at = text(field(status, "outputExpiredAt"))
  if expired_at ~= nil then
    hs.message = hs.message .. "; the PDF was deleted at the end of its retention (" .. expired_at .. ")"
  end
elseif phase == "Failed" or phase == "Expired" then
  hs.status = "Degraded"
  local detail = error_message or ready or ("the job is " .. phase)
  local code = text(field(status, "errorCode"))
  if code ~= nil then
    hs.message = code .. ": " .. detail
  else
    hs.message = detail
  end
elseif phase == "Blocked" then
  hs.status = "Degraded"
  hs.message = "blocked, the account cannot pay: "
    .. (ready or error_message or "too few credits; it continues when credits are added")
elseif phase == "Cancelled" then
  hs.status = "Suspended"
  hs.message = "cancelled on request; it will not render"
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end
return hs
