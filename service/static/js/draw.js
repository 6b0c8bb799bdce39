// The drawing canvas: light strokes on black, as Fashion-MNIST garments are light on dark.

const BRUSH = 26; // on the 280 px canvas, about 2.6 px once the service shrinks it to 28 px
const INK = "#fff";
const PAPER = "#000";

export class DrawingPad {
  /** `onStroke` runs while the pen moves, `onStrokeEnd` when it lifts. */
  constructor(canvas, { onStroke, onStrokeEnd }) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.last = null;
    this.clear();
    canvas.addEventListener("pointerdown", (event) => {
      canvas.setPointerCapture(event.pointerId);
      this.last = this.point(event);
      this.line(this.last, this.last);
      onStroke();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!this.last) return;
      const next = this.point(event);
      this.line(this.last, next);
      this.last = next;
      onStroke();
    });
    const end = () => {
      if (!this.last) return;
      this.last = null;
      onStrokeEnd();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  /** The event's position in canvas pixels (the canvas may be shown smaller than it is). */
  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * this.canvas.width) / box.width,
      ((event.clientY - box.top) * this.canvas.height) / box.height,
    ];
  }

  line([x0, y0], [x1, y1]) {
    const context = this.context;
    context.strokeStyle = INK;
    context.lineWidth = BRUSH;
    context.lineCap = context.lineJoin = "round";
    context.beginPath();
    context.moveTo(x0, y0);
    context.lineTo(x1, y1);
    context.stroke();
  }

  clear() {
    this.context.fillStyle = PAPER;
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Shows a decoded image, fitted and centred, with sharp pixels when it is small (28x28). */
  show(image) {
    this.clear();
    const { width, height } = this.canvas;
    const scale = Math.min(width / image.width, height / image.height);
    const [w, h] = [image.width * scale, image.height * scale];
    this.context.imageSmoothingEnabled = scale < 1;
    this.context.drawImage(image, (width - w) / 2, (height - h) / 2, w, h);
  }

  toBlob() {
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/png"));
  }
}
