// The studio's path canvas (a gr.HTML component; `element`, `props`, `trigger`, `watch` come from Gradio).
// props.value is the scene JSON: {width, height, background, active, entities: [{id, color, points}]}
// with points in output pixels. Edits here are published back with trigger('change'); everything
// else (timing, validation, previews, generation) is Python's, in tora2.scenes and entities.generation.
const DISPLAY = 480;  // CSS pixels of the longer side
const RADIUS = 7;     // keyframe handle radius, CSS pixels
let scene = {};
let drag = null;
let backgroundImage = null;
let backgroundSource = null;

function read() {
  // Python sends settings, entity names and colours; the points drawn here stay (scaled when the
  // size changed) unless Python loaded a saved scene (replace_points).
  let incoming = {};
  try { incoming = JSON.parse(props.value || "{}"); } catch (error) { incoming = {}; }
  incoming.entities = incoming.entities || [];
  if (!incoming.replace_points && scene.entities) {
    const sx = (incoming.width || 64) / (scene.width || incoming.width || 64);
    const sy = (incoming.height || 64) / (scene.height || incoming.height || 64);
    incoming.entities.forEach((entity, i) => {
      const mine = scene.entities[i];
      if (mine) entity.points = mine.points.map(([x, y]) => [x * sx, y * sy]);
    });
    incoming.active = scene.active;
  }
  delete incoming.replace_points;
  scene = incoming;
  scene.active = Math.min(scene.active || 0, Math.max(0, scene.entities.length - 1));
}
function canvas() { return element.querySelector("canvas.studio-paths"); }
function scale() { return DISPLAY / Math.max(scene.width || 64, scene.height || 64); }
function publish() { props.value = JSON.stringify(scene); trigger("change"); }

function position(event) {
  const c = canvas();
  const box = c.getBoundingClientRect();
  const x = (event.clientX - box.left) / box.width * (scene.width || 64);
  const y = (event.clientY - box.top) / box.height * (scene.height || 64);
  return [Math.max(0, Math.min(scene.width - 1, x)), Math.max(0, Math.min(scene.height - 1, y))];
}
function hit(point) {
  const entity = scene.entities[scene.active];
  if (!entity) return -1;
  const reach = RADIUS / scale() * 1.5;
  for (let k = entity.points.length - 1; k >= 0; k--) {
    const [x, y] = entity.points[k];
    if (Math.hypot(x - point[0], y - point[1]) <= reach) return k;
  }
  return -1;
}

function draw() {
  const c = canvas();
  if (!c) return;
  const s = scale();
  c.width = Math.round((scene.width || 64) * s);
  c.height = Math.round((scene.height || 64) * s);
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#eeeeee";
  ctx.fillRect(0, 0, c.width, c.height);
  if (scene.background) {
    if (backgroundSource !== scene.background) {
      backgroundSource = scene.background;
      backgroundImage = new Image();
      backgroundImage.onload = draw;
      backgroundImage.src = scene.background;
    }
    if (backgroundImage && backgroundImage.complete) ctx.drawImage(backgroundImage, 0, 0, c.width, c.height);
  }
  scene.entities.forEach((entity, index) => {
    const active = index === scene.active;
    ctx.strokeStyle = entity.color;
    ctx.fillStyle = entity.color;
    ctx.lineWidth = active ? 3 : 2;
    ctx.globalAlpha = active ? 1.0 : 0.6;
    ctx.beginPath();
    entity.points.forEach(([x, y], k) => (k ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
    ctx.stroke();
    entity.points.forEach(([x, y], k) => {
      ctx.beginPath();
      ctx.arc(x * s, y * s, RADIUS, 0, 2 * Math.PI);
      ctx.fill();
      ctx.strokeStyle = "#000000";
      ctx.lineWidth = 1;
      ctx.stroke();
      ctx.fillStyle = "#ffffff";
      ctx.font = "10px sans-serif";
      ctx.fillText(String(k + 1), x * s - 3, y * s + 3);
      ctx.fillStyle = entity.color;
    });
  });
  ctx.globalAlpha = 1.0;
  const bar = element.querySelector(".studio-entities");
  if (bar) {
    bar.innerHTML = "";
    scene.entities.forEach((entity, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "studio-entity" + (index === scene.active ? " active" : "");
      button.dataset.index = String(index);
      button.style.borderColor = entity.color;
      button.textContent = `${entity.label || entity.id} (${entity.points.length})`;
      bar.appendChild(button);
    });
  }
}

element.addEventListener("click", (event) => {
  const button = event.target.closest && event.target.closest("button.studio-entity");
  if (!button) return;
  scene.active = Number(button.dataset.index);
  draw();
  publish();
});
element.addEventListener("mousedown", (event) => {
  if (event.target !== canvas() || event.button !== 0) return;
  const entity = scene.entities[scene.active];
  if (!entity) return;
  const point = position(event);
  const k = hit(point);
  if (event.shiftKey) {
    if (k >= 0) { entity.points.splice(k, 1); draw(); publish(); }
    return;
  }
  if (k >= 0) {
    drag = k;
  } else {
    entity.points.push(point);
    drag = entity.points.length - 1;
    draw();
  }
  event.preventDefault();
});
element.addEventListener("mousemove", (event) => {
  if (drag === null) return;
  scene.entities[scene.active].points[drag] = position(event);
  draw();
});
window.addEventListener("mouseup", () => {
  if (drag === null) return;
  drag = null;
  publish();
});
element.addEventListener("dblclick", (event) => {
  if (event.target !== canvas()) return;
  const entity = scene.entities[scene.active];
  const k = entity ? hit(position(event)) : -1;
  if (k < 0) return;
  entity.points.splice(k, 0, entity.points[k].slice());  // a repeated point: the entity pauses there
  draw();
  publish();
});
watch("value", () => {
  read();
  draw();
  if (props.value !== JSON.stringify(scene)) publish();  // Python now sees the points kept here
});
read();
draw();
